import os

import pytest
from tokenizers import Tokenizer

NODE_TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "node_modules",
                              "@lenml", "tokenizer-deepseek_v3", "models", "tokenizer.json")


@pytest.fixture(scope="session")
def tokenizer(request):
    try:
        ckpt = request.getfixturevalue("embedded_checkpoint_dir")
        return Tokenizer.from_file(os.path.join(str(ckpt), "tokenizer.json"))
    except pytest.FixtureLookupError:
        return Tokenizer.from_file(NODE_TOKENIZER)
