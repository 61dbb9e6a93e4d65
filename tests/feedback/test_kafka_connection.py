"""Client config builders: the Tansu workarounds stay in force, groups are chosen explicitly."""

from __future__ import annotations

import pytest

from services.common.config import KafkaSettings
from services.common.errors import ErrorKind, FeedrankError
from services.devstack.broker import TansuBroker, tansu_binary, weed_binary
from services.kafka.connection import admin_config, consumer_config, producer_config


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


def test_sasl_ssl_reaches_every_client_config():
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    kafka = KafkaSettings(bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="feedrank-feedback", sasl_password="pw", ssl_cafile="/etc/kafka-ca/ca.crt")
    for build, client in ((producer_config, KafkaProducer), (consumer_config, KafkaConsumer), (admin_config, KafkaAdminClient)):
        config = build(kafka)
        assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["sasl_plain_username"] == "feedrank-feedback" and config["sasl_plain_password"] == "pw"
        assert config["ssl_cafile"] == "/etc/kafka-ca/ca.crt"
        # kafka-python ignores keys it does not know: every key must be one of its own.
        assert set(config) <= set(client.DEFAULT_CONFIG), set(config) - set(client.DEFAULT_CONFIG)


def test_plaintext_sends_no_credentials_and_sasl_without_them_is_refused():
    config = producer_config(KafkaSettings())
    assert config["security_protocol"] == "PLAINTEXT" and not any(k.startswith(("sasl", "ssl")) for k in config)
    with pytest.raises(ValueError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="feedrank-feedback")
