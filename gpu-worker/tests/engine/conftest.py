import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The embedded model's matrices are tiny: a second intra-op thread mostly waits at barriers,
    # and on a busy 2-core machine it makes steps many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
