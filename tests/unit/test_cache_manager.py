from __future__ import annotations

import uuid

import redis

from app.core.cache_manager import CacheManager, MemoryStore

OUTPUT = {"status": "COMPLETED", "result": 3, "error": None}


def test_set_then_get_round_trips_with_a_ttl(cache, fake_redis):
    task_id = uuid.uuid4()
    assert cache.get_output(task_id, "o") is None
    cache.set_output(task_id, "o", OUTPUT)
    assert cache.get_output(task_id, "o") == OUTPUT
    assert 0 < fake_redis.ttl(CacheManager.key(task_id, "o")) <= 60


def test_a_failing_redis_degrades_to_misses_and_pauses(mocker):
    client = mocker.Mock(spec=redis.Redis)
    client.get.side_effect = redis.ConnectionError("refused")
    cache = CacheManager(client, pause_seconds=30)
    assert cache.get_output(uuid.uuid4(), "o") is None
    assert cache.get_output(uuid.uuid4(), "o") is None
    cache.set_output(uuid.uuid4(), "o", OUTPUT)
    assert client.get.call_count == 1  # paused after the first failure
    client.set.assert_not_called()


def test_the_pause_ends(mocker):
    client = mocker.Mock(spec=redis.Redis)
    client.get.side_effect = [
        redis.TimeoutError("slow"),
        b'{"status": "FAILED", "result": null, "error": "x"}',
    ]
    cache = CacheManager(client, pause_seconds=0)
    assert cache.get_output("a", "o") is None
    assert cache.get_output("a", "o") == {"status": "FAILED", "result": None, "error": "x"}


def test_a_real_unreachable_redis_is_a_miss():
    cache = CacheManager.from_url("redis://127.0.0.1:1/0")
    assert cache.get_output(uuid.uuid4(), "o") is None
    assert cache.ping() is False


def test_no_url_gives_the_in_process_cache():
    cache = CacheManager.from_url(None, ttl_seconds=60)
    task_id = uuid.uuid4()
    cache.set_output(task_id, "o", OUTPUT)
    assert cache.get_output(task_id, "o") == OUTPUT
    assert cache.ping() is True


def test_the_in_process_cache_expires_and_stays_bounded(mocker):
    store = MemoryStore(max_entries=2)
    clock = mocker.patch("app.core.cache_manager.time.monotonic", return_value=100.0)
    store.set("a", "1", ex=10)
    store.set("b", "2", ex=10)
    store.set("c", "3", ex=10)
    assert store.get("a") is None and store.get("b") == b"2"
    clock.return_value = 111.0
    assert store.get("b") is None


def test_a_process_keeps_small_outputs_it_read_and_asks_redis_once(cache, fake_redis):
    small, large = uuid.uuid4(), uuid.uuid4()
    big_output = {**OUTPUT, "result": "x" * 5000}
    cache.set_output(small, "o", OUTPUT)
    cache.set_output(large, "o", big_output)
    assert cache.get_output(small, "o") == OUTPUT and cache.get_output(large, "o") == big_output
    fake_redis.flushdb()  # a terminal output never changes: the process's copy stays right
    assert cache.get_output(small, "o") == OUTPUT
    assert cache.get_output(large, "o") is None  # too large to keep in every process
    first = cache.get_output(small, "o")
    first["result"] = "changed by a caller"
    assert cache.get_output(small, "o") == OUTPUT  # each read gets a copy of its own
