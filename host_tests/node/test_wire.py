"""Each reading costs one packet on the wire: one TCP segment in plaintext, one TLS record over TLS.

What one reading costs on the wire, as tshark sees it on loopback: one PUBLISH in one
write, so one TCP segment in plaintext and one TLS record over TLS (umqtt.simple's own
publish makes four writes). Both runtimes: the MicroPython VM's sockets are the ones that count."""
import time

import pytest

from witness import capture, tshark


def _capture_readings(broker, start_node, tmp_path, runtime, port, n=4, **changes):
    w = broker.witness("maison/salon/valeur")
    cfg = broker.node_config(period_s=0.5, stats_s=3600, **changes)
    pcap = tmp_path / "lo.pcapng"
    with capture(port, pcap):
        node = start_node(cfg, runtime)
        node.wait_log(r"connected to")
        readings = [w.next("maison/salon/valeur")[1] for _ in range(n)]
        time.sleep(0.3)
    return pcap, readings


@pytest.mark.parametrize("qos", [0, 1])
def test_each_reading_is_one_tcp_segment(broker, start_node, tmp_path, runtime, qos):
    port = broker.local_port
    pcap, readings = _capture_readings(broker, start_node, tmp_path, runtime, port,
                                       mqtt__tls=False, mqtt__port=port, qos=qos)
    rows = tshark(pcap, "tcp.port==%d,mqtt" % port,
                  'tcp.dstport == %d && mqtt.topic == "maison/salon/valeur"' % port,
                  "tcp.len", "mqtt.len", "mqtt.qos", "mqtt.msg")
    assert len(rows) >= len(readings), rows
    for tcp_len, mqtt_len, q, msg in rows[1:]:  # the first may share a segment with the connect's burst
        assert len(mqtt_len) == 1, "a segment carries one PUBLISH, not %s" % mqtt_len
        # The whole packet (type byte + one length byte + the rest) is in this one segment.
        assert int(tcp_len[0]) == 2 + int(mqtt_len[0]), (tcp_len, mqtt_len)
        assert q == [str(qos)]
    seen = {bytes.fromhex(m.replace(":", "")) for _, _, _, msgs in rows for m in msgs}
    assert set(readings) <= seen


def test_each_reading_is_one_tls_record(broker, start_node, tmp_path, runtime):
    pcap, readings = _capture_readings(broker, start_node, tmp_path, runtime, broker.port, n=5, qos=0)
    # Application data the node sent; in steady state only readings (QoS 0: no PUBACK, no stats).
    rows = tshark(pcap, "tcp.port==%d,tls" % broker.port,
                  # (TLS 1.3 calls the outer type of an encrypted record opaque_type.)
                  "tcp.dstport == %d && (tls.record.content_type == 23 || tls.record.opaque_type == 23)"
                  % broker.port,
                  "tls.record.length")
    last = rows[-(len(readings) - 1):]  # the first reading may share the connect's burst
    for (lengths,) in last:
        assert len(lengths) == 1, "one TLS record per segment, not %s" % lengths
    assert len({r[0][0] for r in last}) == 1, "every reading's record has the same size: %s" % last
