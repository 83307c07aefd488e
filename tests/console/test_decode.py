"""One decoding of a record for people (console/_decode.py), shared by the console's pages
and ``millstream exceptions show``: exact outputs for JSON, text, hex, cuts and headers."""

from __future__ import annotations

from millstream.console._decode import Shown, fields, show, show_record
from millstream.console._limits import MAX_PAYLOAD
from millstream.records import Record


def test_a_json_payload_is_pretty_printed_and_parsed() -> None:
    shown = show(b'{"id":1,"name":"caf\xc3\xa9","tags":["a"]}')
    assert shown == Shown("json", '{\n  "id": 1,\n  "name": "café",\n  "tags": [\n    "a"\n  ]\n}',
                          size=36, shown=36, value={"id": 1, "name": "café", "tags": ["a"]})
    assert not shown.cut and shown.note() == ""


def test_text_that_is_not_json_is_text_and_a_number_is_json() -> None:
    assert show(b"hello <script>") == Shown("text", "hello <script>", 14, 14)
    assert show(b"42") == Shown("json", "42", 2, 2, 42)
    assert show(b"line one\n\tline two\r\n") == Shown("text", "line one\n\tline two\r\n", 20, 20)
    # NaN and Infinity are not JSON, whatever Python's json module accepts
    assert show(b"NaN").kind == "text"


def test_bytes_that_are_not_utf8_text_are_hex() -> None:
    assert show(b"\x00\xff\x10") == Shown("hex", "00ff10", 3, 3)
    # UTF-8, but with control characters: binary, shown as hex
    assert show(b"ab\x00c") == Shown("hex", "61620063", 4, 4)
    assert show(b"") == Shown("text", "", 0, 0)


def test_nothing_is_none() -> None:
    assert show(None) == Shown("none", "", 0, 0)
    assert show(None).as_dict() == {"kind": "none", "text": "", "size": 0, "shown": 0,
                                    "cut": False, "note": ""}


def test_a_key_is_never_parsed_as_json() -> None:
    assert show(b"123", as_json=False) == Shown("text", "123", 3, 3)
    assert show(b'{"a":1}', as_json=False) == Shown("text", '{"a":1}', 7, 7)


def test_a_large_value_is_cut_at_the_bound_with_its_size_said() -> None:
    assert MAX_PAYLOAD == 65_536
    text = show(b"x" * (1024 * 1024))
    assert (text.kind, len(text.text), text.size, text.shown) == ("text", 65_536, 1_048_576,
                                                                  65_536)
    assert text.cut and text.note() == "showing the first 65,536 of 1,048,576 bytes"
    binary = show(b"\x01\xff" * 40_000)
    assert (binary.kind, binary.text[:8], len(binary.text), binary.size, binary.shown) == \
        ("hex", "01ff01ff", 131_072, 80_000, 65_536)
    # a JSON value past the bound is not parsed (its JSON would be incomplete): shown as text
    big = b'{"blob":"' + b"y" * 70_000 + b'"}'
    assert (show(big).kind, show(big).text[:12], show(big).shown) == ("text", '{"blob":"yyy',
                                                                     65_536)


def test_a_cut_through_a_character_leaves_that_character_out() -> None:
    data = "é".encode() * 5  # two bytes each; a bound of 5 cuts the third in two
    assert show(data, limit=5) == Shown("text", "éé", 10, 4)


def test_json_whose_indentation_would_explode_is_shown_as_sent() -> None:
    deep = b"[" * 200 + b"0," * 1000 + b"0" + b"]" * 200
    shown = show(deep, limit=4096)
    assert (shown.kind, shown.text, shown.size, shown.shown) == ("json", deep.decode(),
                                                                 len(deep), len(deep))
    # nesting past Python's recursion limit is not parsed: text
    assert show(b"[" * 100_000, limit=200_000).kind == "text"


def test_a_record_shows_its_key_value_and_headers() -> None:
    record = Record("orders", 2, 17, 1_700_000_000_000, b"k\xff", b'{"id": 3}',
                    (("millstream-schema", b"Order/1"), ("bin", b"\x00\x01"), ("none", None)))
    shown = show_record(record)
    assert shown.as_dict() == {
        "stream": "orders", "partition": 2, "offset": 17, "timestamp": 1_700_000_000_000,
        "key": {"kind": "hex", "text": "6bff", "size": 2, "shown": 2, "cut": False,
                "note": ""},
        "value": {"kind": "json", "text": '{\n  "id": 3\n}', "size": 9, "shown": 9,
                  "cut": False, "note": ""},
        "headers": [
            {"name": "millstream-schema", "kind": "text", "text": "Order/1", "size": 7,
             "shown": 7, "cut": False, "note": ""},
            {"name": "bin", "kind": "hex", "text": "0001", "size": 2, "shown": 2,
             "cut": False, "note": ""},
            {"name": "none", "kind": "none", "text": "", "size": 0, "shown": 0, "cut": False,
             "note": ""},
        ]}


def test_fields_for_the_cli_name_what_each_value_is() -> None:
    assert fields("value", b'{"id": 1, "tags": ["a"]}') == {"value": {"id": 1, "tags": ["a"]}}
    assert fields("value", b"not json \xc3\xa9") == {"value_text": "not json é"}
    assert fields("value", b"\x00\xff\x10") == {"value_hex": "00ff10"}
    assert fields("key", b"123", as_json=False) == {"key_text": "123"}
    assert fields("key", None) == {}
    assert fields("value", b"z" * 10, limit=4) == {"value_text": "zzzz", "value_size": 10,
                                                   "value_shown": 4}
