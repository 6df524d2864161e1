"""GET /v1/usage: the worker's own per-request records, keyed by the gateway's x-request-id, that
reconciliation compares with what the gateway settled. The route: test_http.py."""
from gpu_worker.server.protocol import Usage
from gpu_worker.server.usage_log import UsageLog


def served(log: UsageLog, request_id, completion=3):
    log.record(request_id, "chat", "deepseek-chat", "stop", Usage(prompt_tokens=10, completion_tokens=completion))


def ids(records):
    return [r["request_id"] for r in records]


def test_records_gateway_requests_in_order_and_pages_through_them():
    log = UsageLog()
    for i in range(5):
        served(log, f"r{i}", completion=i)
    served(log, None)  # a request without x-request-id is not the gateway's: not recorded
    first = log.page(0, 0, 2)
    assert ids(first) == ["r0", "r1"]
    rest = log.page(0, first[-1]["seq"], 10)
    assert [(r["request_id"], r["completion_tokens"]) for r in rest] == [("r2", 2), ("r3", 3), ("r4", 4)]
    assert log.page(rest[-1]["finished_at"] + 1, 0, 10) == []


def test_keeps_a_bounded_window():
    log = UsageLog(max_records=3)
    for i in range(5):
        served(log, f"r{i}")
    assert ids(log.page(0, 0, 10)) == ["r2", "r3", "r4"]
    # a cursor from before the window, inside it, and at its end (records r0..r4 have seq 1..5)
    assert ids(log.page(0, 1, 10)) == ["r2", "r3", "r4"]
    assert ids(log.page(0, 4, 10)) == ["r4"]
    assert log.page(0, 5, 10) == []
    aged = UsageLog(retain_seconds=0)
    served(aged, "old")
    aged.records[0]["finished_at"] -= 10
    served(aged, "new")
    assert ids(aged.page(0, 0, 10)) == ["new"]

