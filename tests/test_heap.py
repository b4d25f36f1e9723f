"""roundlab.heap: freed heap pages go back to the OS after every batch of a statistics pass; no C library with
``malloc_trim`` is a no-op, not an error."""

import torch

import roundlab.heap as heap
from roundlab.pipeline.capture import stream_inputs


def test_without_malloc_trim_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    heap.return_freed_memory()


def test_with_malloc_trim_it_is_called(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "_malloc_trim", lambda: calls.append)
    heap.return_freed_memory()
    assert calls == [0]


def test_a_statistics_pass_returns_freed_memory_after_every_batch(monkeypatch):
    import roundlab.pipeline.capture as capture

    calls = []
    monkeypatch.setattr(capture, "return_freed_memory", lambda: calls.append(1))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    stream_inputs(model, torch.randn(10, 4), {"0": model[0]}, lambda name, rows: None, batch_size=3)
    assert len(calls) == 4
