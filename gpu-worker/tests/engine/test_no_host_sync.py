"""A decode step of the whole model, and the sampler, make the host wait for nothing (item 7 of
issue 14): the step can be captured as a CUDA graph and queued ahead of the device."""
import pytest
import torch

from gpu_worker.engine.model_runner import ModelRunner
from gpu_worker.engine.sampler import OutputCounts, Sampler, SamplingBatch
from gpu_worker.engine.sequence import SamplingParams, Sequence
from tests.engine.host_sync import HostSync, no_host_sync
from tests.model.tiny import CONFIGS, hf_config, random_model


def test_the_detector_catches_syncs():
    x = torch.arange(6.0)
    for bad in (lambda: x.sum().item(), lambda: bool(x.max() > 2), lambda: x[x > 2], lambda: x.nonzero(),
                lambda: x.tolist(), lambda: torch.repeat_interleave(torch.tensor([1, 2]), torch.tensor([2, 1])),
                lambda: torch.bincount(x.long())):
        with pytest.raises(HostSync), no_host_sync():
            bad()
    with no_host_sync():  # static-shape work passes
        torch.repeat_interleave(torch.tensor([1, 2]), torch.tensor([2, 1]), output_size=3)
        x.argmax().unsqueeze(0) + x[torch.tensor([1, 2])]


def decode_step_logits(config: dict) -> torch.Tensor:
    """One decode step of three sequences (padded to bucket 4) under the detector."""
    model = random_model(config)
    runner = ModelRunner(model, num_blocks=16, block_size=8, max_num_seqs=4, max_model_len=64)
    decode = runner.decode
    rows = [(3, 5, [0]), (7, 12, [1, 2]), (9, 0, [3])]
    bs = decode._fill(rows)
    decode.packed.copy_(decode.host)
    with no_host_sync():  # the context bound is the static one a CUDA graph uses
        hidden = decode._forward(bs, max_context_len=decode.max_blocks * decode.block_size)
        return model.compute_logits(hidden[:len(rows)])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_step_of_attention_and_dense_layers_has_no_host_sync(name):
    config = hf_config(name)
    config["first_k_dense_replace"] = config["num_hidden_layers"]
    assert torch.isfinite(decode_step_logits(config)).all()


def test_sampler_choice_has_no_host_sync():
    counts = OutputCounts(50, torch.device("cpu"), max_num_seqs=3)
    seqs = [Sequence(f"s{i}", [1], p) for i, p in enumerate([
        SamplingParams(temperature=0), SamplingParams(temperature=0.8, top_p=0.9, seed=3, logprobs=True),
        SamplingParams(temperature=1.2, frequency_penalty=0.5, presence_penalty=0.2)])]
    batch = SamplingBatch(seqs, torch.device("cpu"), counts)
    with no_host_sync():
        chosen, logprobs = Sampler().choose(torch.randn(3, 50), batch)
    assert chosen.shape == (3,) and logprobs.shape == (1, 50)
