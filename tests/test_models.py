"""aiodicom.models keeps pacsanini's DicomNode and StorageSortKey behaviour.

The first tests restate pacsanini's own model test and its documented examples
(docs/user_guide/tutorials/storescp.md, docs/user_guide/configuration.md); the rest pin
the validation that replaces pydantic.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from aiodicom import models
from aiodicom.models import DicomNode, StorageSortKey
from aiodicom.storage import layout

# --- pacsanini's model test, restated -------------------------------------------------


def test_str_and_bytes_titles_and_int_and_str_ports_give_equal_nodes() -> None:
    text_fields: dict[str, Any] = {"aetitle": "foo", "ip": "localhost", "port": 11112}
    bytes_fields: dict[str, Any] = {"aetitle": b"foo", "ip": "localhost", "port": "11112"}
    from_text = DicomNode(**text_fields)
    from_bytes = DicomNode(**bytes_fields)
    assert from_text == from_bytes
    assert from_text.has_net_info
    assert from_bytes.has_net_info
    assert from_text.aetitle == b"foo"
    assert from_bytes.port == 11112


def test_node_without_address_has_no_net_info() -> None:
    assert not DicomNode(aetitle="foo").has_net_info


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"aetitle": 111112, "ip": "localhost", "port": 11112},
        {"aetitle": "foo", "ip": "localhost", "port": "11112.21"},
    ],
    ids=["missing-aetitle", "int-aetitle", "fractional-port"],
)
def test_invalid_nodes_raise_value_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DicomNode(**fields)


# --- documented examples ---------------------------------------------------------------


def test_storescp_tutorial_node_info_has_a_port_to_listen_on() -> None:
    # storescp.md: my_node_info = {"aetitle": "my_aetitle", "port": 11112}
    my_node_info: dict[str, Any] = {"aetitle": "my_aetitle", "port": 11112}
    node = DicomNode(**my_node_info)
    assert node.has_port()
    assert node.port == 11112
    assert node.aetitle == b"my_aetitle"
    assert node.ip is None
    assert not node.has_net_info  # no ip: a listening node needs only the port


def test_configuration_local_node_without_port_cannot_listen() -> None:
    # configuration.md: local_node needs only aetitle; the port is for storescp.
    node = DicomNode(aetitle="mytitle")
    assert not node.has_port()
    assert node.port is None


def test_configuration_called_node_has_full_net_info() -> None:
    called_node: dict[str, Any] = {"aetitle": "theirtitle", "ip": "127.0.0.1", "port": 11112}
    node = DicomNode(**called_node)
    assert node.has_net_info
    assert (node.aetitle, node.ip, node.port) == (b"theirtitle", "127.0.0.1", 11112)


def test_storage_sort_key_is_the_layout_enum() -> None:
    assert models.StorageSortKey is layout.StorageSortKey


@pytest.mark.parametrize("name", ["PATIENT", "STUDY", "SERIES", "IMAGE"])
def test_storage_sort_key_documented_values(name: str) -> None:
    # configuration.md: sort_by: PATIENT in a config file; storescp.md lists the members.
    member = getattr(StorageSortKey, name)
    assert member.value == name
    assert StorageSortKey(name) is member
    # pacsanini compared with ==, so a plain string from a config file matches.
    assert member == name


def test_storage_sort_key_default_member_order() -> None:
    assert [key.value for key in StorageSortKey] == ["PATIENT", "STUDY", "SERIES", "IMAGE"]


# --- pydantic v1 behaviour kept ---------------------------------------------------------


def test_empty_ip_and_port_mean_not_set() -> None:
    node = DicomNode(aetitle="A", ip="", port="")
    assert node.ip is None
    assert node.port is None
    assert not node.has_port()


def test_has_net_info_argument_is_recomputed() -> None:
    assert not DicomNode(aetitle="A", has_net_info=True).has_net_info
    assert DicomNode(aetitle="A", ip="h", port=1, has_net_info=False).has_net_info


def test_unknown_keywords_are_ignored() -> None:
    assert DicomNode(aetitle="A", hostname="x") == DicomNode(aetitle="A")


def test_construction_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        DicomNode("A")  # type: ignore[call-arg]


def test_repr_and_str_follow_pydantic_v1() -> None:
    node = DicomNode(aetitle="foo", ip="localhost", port=11112)
    assert repr(node) == "DicomNode(aetitle=b'foo', ip='localhost', port=11112, has_net_info=True)"
    assert str(node) == "aetitle=b'foo' ip='localhost' port=11112 has_net_info=True"


def test_dict_and_equality_with_a_dict() -> None:
    node = DicomNode(aetitle="foo", port=104)
    expected = {"aetitle": b"foo", "ip": None, "port": 104, "has_net_info": False}
    assert node.dict() == expected
    assert node == expected
    assert node != {**expected, "port": 105}
    assert node != "foo"


def test_parse_obj() -> None:
    node = DicomNode.parse_obj({"aetitle": "foo", "ip": "h", "port": "1"})
    assert node == DicomNode(aetitle=b"foo", ip="h", port=1)
    assert DicomNode.parse_obj(node) == node
    with pytest.raises(ValueError):
        DicomNode.parse_obj(["foo"])  # type: ignore[arg-type]


def test_nodes_are_unhashable_like_pydantic_models() -> None:
    with pytest.raises(TypeError):
        hash(DicomNode(aetitle="A"))


def test_copy_and_pickle_keep_the_node() -> None:
    node = DicomNode(aetitle="foo", ip="h", port=11112)
    assert copy.copy(node) == node
    assert copy.deepcopy(node) == node
    assert pickle.loads(pickle.dumps(node)) == node


# --- validation that replaces pydantic -------------------------------------------------


@pytest.mark.parametrize("port", [0, 1, 104, 11112, 65535, "65535", 11112.0])
def test_ports_in_range_are_accepted(port: object) -> None:
    node = DicomNode(aetitle="A", port=port)  # type: ignore[arg-type]
    assert node.port == int(port)  # type: ignore[call-overload]
    # 0 is kept (the OS picks a free port), unlike pacsanini's "falsy means unset".
    assert node.has_port()


@pytest.mark.parametrize("port", [-1, 65536, "70000", "-5", True, 1.5, "abc", [104]])
def test_ports_out_of_range_or_of_the_wrong_type_are_rejected(port: object) -> None:
    with pytest.raises(ValueError):
        DicomNode(aetitle="A", port=port)  # type: ignore[arg-type]


@pytest.mark.parametrize("title", ["A", "STORESCP", "X" * 16, b"Y" * 16, " PAD ", "A-B_C.1"])
def test_valid_ae_titles(title: str | bytes) -> None:
    node = DicomNode(aetitle=title)
    assert node.aetitle == (title.encode() if isinstance(title, str) else title)


@pytest.mark.parametrize(
    "title",
    ["", "    ", "X" * 17, b"Y" * 17, "A\\B", "A\nB", b"A\x00B", b"A\x1bB", "café", b"\xff"],
)
def test_invalid_ae_titles(title: str | bytes) -> None:
    # PS3.5 Table 6.2-1: at most 16 default-repertoire characters, no backslash,
    # no control characters, not only spaces.
    with pytest.raises(ValueError):
        DicomNode(aetitle=title)


def test_ip_of_the_wrong_type_is_rejected() -> None:
    with pytest.raises(ValueError):
        DicomNode(aetitle="A", ip=127)  # type: ignore[arg-type]
    assert DicomNode(aetitle="A", ip=b"127.0.0.1").ip == "127.0.0.1"  # type: ignore[arg-type]


def test_assignment_is_validated_and_net_info_follows() -> None:
    node = DicomNode(aetitle="A", ip="127.0.0.1")
    assert not node.has_net_info
    node.port = "11112"  # type: ignore[assignment]
    assert node.port == 11112
    assert node.has_net_info
    node.aetitle = "B"
    assert node.aetitle == b"B"
    with pytest.raises(ValueError):
        node.port = 70000
    assert node.port == 11112
    with pytest.raises(ValueError):
        node.aetitle = "X" * 17
    with pytest.raises(AttributeError):
        node.has_net_info = False
    with pytest.raises(AttributeError):
        node.other = 1
