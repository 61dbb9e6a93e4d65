"""Client config builders: the Tansu workarounds stay in force, groups are chosen explicitly."""

from __future__ import annotations

import pytest

from services.common.config import KafkaSettings
from services.common.errors import ErrorKind, FeedrankError
from services.kafka.clients import consumer_config, producer_config
from services.kafka.launcher import TansuBroker, tansu_binary, weed_binary


def test_producer_is_acks_all_without_idempotence():
    config = producer_config(KafkaSettings(bootstrap_servers="a:1, b:2"))
    assert config["bootstrap_servers"] == ["a:1", "b:2"]
    assert config["acks"] == "all" and config["enable_idempotence"] is False and config["retries"] > 0
    assert config["max_in_flight_requests_per_connection"] == 1


def test_consumer_group_choice():
    kafka = KafkaSettings(consumer_group="trainer")
    assert consumer_config(kafka)["group_id"] == "trainer"
    assert consumer_config(kafka, "models-watch")["group_id"] == "models-watch"
    assert consumer_config(kafka, None)["group_id"] is None
    config = consumer_config(kafka)
    assert config["auto_offset_reset"] == "earliest" and config["enable_auto_commit"] is False


def test_binaries_are_found_or_named():
    assert tansu_binary().name == "tansu"
    assert weed_binary().name == "weed"


def test_unstarted_broker_has_no_address(tmp_path):
    with pytest.raises(FeedrankError) as err:
        TansuBroker(tmp_path).bootstrap_servers
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION
