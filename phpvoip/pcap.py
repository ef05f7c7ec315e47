"""Classic libpcap files of SIP messages, for Wireshark and tshark.

A call ladder keeps what went over the sockets (bytes, both addresses, the time),
not the packets, so the packets are made up here: each message becomes one raw IP
packet (LINKTYPE_RAW, no link layer) carrying a UDP datagram, or TCP segments. A TCP
flow gets sequence numbers that run on from segment to segment and acknowledge what
the other direction sent, with no handshake: Wireshark shows the stream as captured
mid-connection and dissects each segment's SIP. Checksums are computed, so nothing is
flagged as corrupt.

The file format is the original one (magic 0xa1b2c3d4, version 2.4, microseconds):
every version of Wireshark, tshark and tcpdump reads it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import BinaryIO

__all__ = ["LINKTYPE_RAW", "Packet", "PcapWriter", "TcpFlows", "ip_packets"]

LINKTYPE_RAW = 101  # the packet starts with its IPv4 or IPv6 header
SNAPLEN = 262144
_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_PROTO_TCP = 6
_PROTO_UDP = 17
_TCP_PSH_ACK = 0x18
_TCP_WINDOW = 65535
_FIRST_SEQ = 1
# Room left in a 65535-octet IP packet after the largest headers used here.
_MAX_TCP_CHUNK = 65535 - 40 - 20


class Packet:
    """One message as it went over a socket: `transport` "udp" or "tcp", source and
    destination as (host, port), the payload and the clock time."""

    __slots__ = ("transport", "source", "destination", "payload", "time")

    def __init__(self, transport: str, source: tuple[str, int], destination: tuple[str, int],
                 payload: bytes, time: float) -> None:
        self.transport = transport
        self.source = source
        self.destination = destination
        self.payload = payload
        self.time = time


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement
    sum of the 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(host: str, v6: bool) -> bytes:
    """The packed address of `host`; a host that is no IP literal (it should not
    happen: the transport only sends to literals) or unspecified stays all zeros."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bytes(16 if v6 else 4)
    if v6 and address.version == 4:
        return ipaddress.IPv6Address(f"::ffff:{address}").packed
    return address.packed


def _is_v6(host: str) -> bool:
    return ":" in host


class TcpFlows:
    """Sequence numbers of the TCP flows seen so far, per direction."""

    def __init__(self) -> None:
        self.next_seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}

    def numbers(self, source: tuple[str, int], destination: tuple[str, int], size: int) -> tuple[int, int]:
        """(seq, ack) for `size` octets from `source` to `destination`."""
        seq = self.next_seq.get((source, destination), _FIRST_SEQ)
        self.next_seq[(source, destination)] = (seq + size) & 0xFFFFFFFF
        ack = self.next_seq.get((destination, source), _FIRST_SEQ)
        return seq, ack


def ip_packets(packet: Packet, flows: TcpFlows, ident: int = 0) -> list[bytes]:
    """The raw IP packets that carry `packet` (more than one for a TCP message too
    large for one segment)."""
    v6 = _is_v6(packet.source[0]) or _is_v6(packet.destination[0])
    src, dst = _ip(packet.source[0], v6), _ip(packet.destination[0], v6)
    sport, dport = packet.source[1], packet.destination[1]
    if packet.transport == "tcp":
        payload = packet.payload
        chunks = [payload[i:i + _MAX_TCP_CHUNK] for i in range(0, len(payload), _MAX_TCP_CHUNK)] or [b""]
        out = []
        for chunk in chunks:
            seq, ack = flows.numbers(packet.source, packet.destination, len(chunk))
            header = _TCP.pack(sport, dport, seq, ack, 5 << 4, _TCP_PSH_ACK, _TCP_WINDOW, 0, 0)
            segment = header + chunk
            checksum = _checksum(_pseudo_header(src, dst, _PROTO_TCP, len(segment), v6) + segment)
            segment = segment[:16] + struct.pack("!H", checksum) + segment[18:]
            out.append(_ip_header(src, dst, _PROTO_TCP, len(segment), v6, ident) + segment)
        return out
    datagram = _UDP.pack(sport, dport, 8 + len(packet.payload), 0) + packet.payload
    checksum = _checksum(_pseudo_header(src, dst, _PROTO_UDP, len(datagram), v6) + datagram) or 0xFFFF
    datagram = datagram[:6] + struct.pack("!H", checksum) + datagram[8:]
    return [_ip_header(src, dst, _PROTO_UDP, len(datagram), v6, ident) + datagram]


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int, v6: bool) -> bytes:
    if v6:  # RFC 8200 §8.1
        return src + dst + struct.pack("!I3xB", length, proto)
    return src + dst + struct.pack("!xBH", proto, length)  # RFC 768


def _ip_header(src: bytes, dst: bytes, proto: int, payload_length: int, v6: bool, ident: int) -> bytes:
    if v6:
        return _IPV6.pack(6 << 28, payload_length, proto, 64, src, dst)
    header = _IPV4.pack(0x45, 0, 20 + payload_length, ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:]


class PcapWriter:
    """Writes packets to a binary file, global header first."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.flows = TcpFlows()
        self.count = 0
        out.write(_GLOBAL_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))

    def write(self, packet: Packet) -> None:
        seconds = int(packet.time)
        micros = min(round((packet.time - seconds) * 1e6), 999999)
        for raw in ip_packets(packet, self.flows, self.count + 1):
            self.out.write(_RECORD_HEADER.pack(seconds, micros, len(raw), len(raw)))
            self.out.write(raw)
        self.count += 1

    def write_all(self, packets: Iterable[Packet]) -> int:
        """Write every packet; the number of messages written."""
        before = self.count
        for packet in packets:
            self.write(packet)
        return self.count - before
