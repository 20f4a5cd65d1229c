from __future__ import annotations

import pytest

from app.core.errors import InvalidInput, UnknownTaskType
from tests.support import REGISTRY


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("sum", "sum_two_numbers"), ("sum_two_numbers", "sum_two_numbers"), ("chatgpt", "query_chatgpt")],
)
def test_names_and_aliases_resolve(name, canonical):
    assert REGISTRY.resolve(name).name == canonical


@pytest.mark.parametrize("name", ["", "SUM", "sum ", None, 3, ["sum"]])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(UnknownTaskType) as caught:
        REGISTRY.resolve(name)
    assert "sum_two_numbers" in caught.value.message


def test_every_task_type_routes_and_limits_sensibly():
    assert REGISTRY.queues == ["default", "external_api"]
    for task_type in REGISTRY:
        assert 0 < task_type.soft_time_limit < task_type.time_limit
        assert task_type.celery_name == f"tasker.{task_type.name}"


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [({"a": 1, "b": 2}, {"a": 1, "b": 2}), ({"a": 1.5, "b": -2}, {"a": 1.5, "b": -2})],
)
def test_sum_keeps_numbers_as_sent(parameters, expected):
    clean = REGISTRY.resolve("sum").validate(parameters)
    assert clean == expected and type(clean["a"]) is type(expected["a"])


@pytest.mark.parametrize(
    "value", ["5", True, False, float("nan"), float("inf"), -float("inf"), None, 2**53, [1]]
)
def test_sum_rejects_non_numbers(value):
    with pytest.raises(InvalidInput) as caught:
        REGISTRY.resolve("sum").validate({"a": value, "b": 1})
    assert "a" in caught.value.details["parameters"]


def test_optional_chatgpt_fields_stay_absent():
    assert REGISTRY.resolve("chatgpt").validate({"prompt": "hi"}) == {"prompt": "hi"}
