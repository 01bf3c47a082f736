"""Dataplane variables, templates and YAML loading: what ``-v``, ``{{ }}`` and bad files give."""

from __future__ import annotations

from typing import Any

import pytest

from kumadp.resources import (
    ValidationError,
    load_document,
    parse_dataplane,
    parse_vars,
    render,
    render_resource,
)


def errors_of(call: Any, *args: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        call(*args)
    return [str(e) for e in info.value.errors]


# --- parse_vars -------------------------------------------------------------------------------


def test_plain_vars_stay_strings() -> None:
    assert parse_vars(["name=web-1", "port=8080", "empty=", "eq=a=b"]) == {
        "name": "web-1",
        "port": "8080",
        "empty": "",
        "eq": "a=b",
    }
    assert parse_vars([]) == {}


def test_dotted_vars_merge_deeply() -> None:
    # Kuma keeps only the last of these; kumadp merges them.
    assert parse_vars(["a.b=1", "a.c=2"]) == {"a": {"b": "1", "c": "2"}}
    assert parse_vars(["a.b.c=1", "a.b.d=2", "a.e=3", "f=4"]) == {
        "a": {"b": {"c": "1", "d": "2"}, "e": "3"},
        "f": "4",
    }


def test_a_later_value_for_the_same_key_wins() -> None:
    assert parse_vars(["a.b=1", "a.b=2", "c=x", "c=y"]) == {"a": {"b": "2"}, "c": "y"}


def test_key_whitespace_is_trimmed_value_is_kept() -> None:
    assert parse_vars([" name = web "]) == {"name": " web "}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            ["a=1", "a.b=2"],
            'variable "a.b=2": "a.b" conflicts with "a": '
            "a variable is a value or a group, not both",
        ),
        (
            ["a.b=2", "a=1"],
            'variable "a=1": "a" conflicts with "a.b": a variable is a value or a group, not both',
        ),
        (
            ["a.b=1", "a.b.c=2"],
            'variable "a.b.c=2": "a.b.c" conflicts with "a.b": '
            "a variable is a value or a group, not both",
        ),
        (["name"], 'variable "name": missing "=" (expected key=value)'),
        (["=web"], 'variable "=web": empty key (expected key=value)'),
        (["a..b=1"], 'variable "a..b=1": key "a..b" has an empty part'),
        ([".a=1"], 'variable ".a=1": key ".a" has an empty part'),
    ],
)
def test_bad_vars(items: list[str], expected: str) -> None:
    assert errors_of(parse_vars, items) == [expected]


def test_every_bad_var_is_reported() -> None:
    assert errors_of(parse_vars, ["x", "a=1", "ok=1", "a.b=2", "=y"]) == [
        'variable "x": missing "=" (expected key=value)',
        'variable "a.b=2": "a.b" conflicts with "a": a variable is a value or a group, not both',
        'variable "=y": empty key (expected key=value)',
    ]


# --- render ----------------------------------------------------------------------------------


def test_render_placeholders() -> None:
    variables = {"name": "web-1", "net": {"addr": "10.0.0.1", "port": 8080}}
    text = "name: {{ name }}\nalias: {{name}}\naddress: {{  net.addr  }}:{{net.port}}\n"
    assert render(text, variables) == ("name: web-1\nalias: web-1\naddress: 10.0.0.1:8080\n")


def test_render_triple_braces_and_text_without_placeholders() -> None:
    assert render("a: {{{ x }}}", {"x": "<1>"}) == "a: <1>"
    assert render("a: {b: 1}\n", {}) == "a: {b: 1}\n"
    assert render("", {}) == ""


def test_render_lists_every_missing_placeholder_once() -> None:
    text = "a: {{ name }}\nb: {{ net.address }}\nc: {{ name }}\nd: {{ port }}\n"
    assert errors_of(render, text, {"port": "1", "net": {}}) == [
        "{{ name }}: no value given (use --dataplane-var name=...)",
        "{{ net.address }}: no value given (use --dataplane-var net.address=...)",
    ]


def test_render_dotted_name_through_a_value() -> None:
    assert errors_of(render, "{{ a.b }}", {"a": "1"}) == [
        "{{ a.b }}: no value given (use --dataplane-var a.b=...)"
    ]


def test_render_a_group_is_not_a_value() -> None:
    assert errors_of(render, "x: {{ a }}", {"a": {"b": "1", "c": "2"}}) == [
        "{{ a }}: is a group of variables (a.b, a.c), not a value"
    ]


def test_render_unsupported_mustache_features() -> None:
    assert errors_of(render, "{{# items }}x{{/ items }}", {"items": "1"}) == [
        "{{ # items }}: not a variable name (only {{ name }} and {{ a.b }} are supported)",
        "{{ / items }}: not a variable name (only {{ name }} and {{ a.b }} are supported)",
    ]


def test_render_leaves_full_line_comments_alone() -> None:
    text = "# set {{ undocumented }} here\n  # {{ x }}\nname: {{ name }} # {{ name }}\n"
    assert render(text, {"name": "n"}) == (
        "# set {{ undocumented }} here\n  # {{ x }}\nname: n # n\n"
    )


# --- load_document ---------------------------------------------------------------------------


def test_load_yaml_and_json() -> None:
    assert load_document("a: 1\nb: [x, y]\n") == {"a": 1, "b": ["x", "y"]}
    assert load_document('{"a": 1, "b": {"c": null}}') == {"a": 1, "b": {"c": None}}
    assert load_document("---\na: 1\n---\n") == {"a": 1}


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n", "null\n"])
def test_load_empty_document(text: str) -> None:
    assert errors_of(load_document, text, "dp.yaml") == ["dp.yaml: document is empty"]


def test_load_several_documents() -> None:
    assert errors_of(load_document, "a: 1\n---\nb: 2\n---\nc: 3\n", "all.yaml") == [
        "all.yaml: has 3 YAML documents; give exactly one resource"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "type: Dataplane\nnetworking:\n  address: 1.2.3.4\n   inbound: []\n",
            "dp.yaml: invalid YAML at line 4, column 11: mapping values are not allowed here",
        ),
        (
            "a: [1, 2\n",
            "dp.yaml: invalid YAML at line 2, column 1: expected ',' or ']', "
            "but got '<stream end>'",
        ),
        (
            "a:\n\t- 1\n",
            "dp.yaml: invalid YAML at line 2, column 1: found character '\\t' "
            "that cannot start any token",
        ),
        (
            '{"a": 1,, }',
            "dp.yaml: invalid YAML at line 1, column 9: expected the node content, but found ','",
        ),
        ("a: 1\nb: 2\na: 3\n", 'dp.yaml: invalid YAML at line 3, column 1: duplicate key "a"'),
    ],
)
def test_load_syntax_errors(text: str, expected: str) -> None:
    assert errors_of(load_document, text, "dp.yaml") == [expected]


def test_duplicate_keys_are_found_in_nested_mappings_and_aliases_are_refused() -> None:
    with pytest.raises(ValidationError, match=r'line 3, column 3: duplicate key "port"'):
        load_document("inbound:\n  port: 1\n  port: 2\n")
    text = "base: &b {port: 1, tags: {x: y}}\nuse:\n  <<: *b\n  port: 2\n"
    with pytest.raises(ValidationError, match=r"line 3, column 7: YAML aliases \(\*name\)"):
        load_document(text)
    assert load_document("base: &b {port: 1}\n") == {"base": {"port": 1}}  # anchors alone


def test_hostile_templates_fail_fast() -> None:
    import time

    text = "name: {{" + " " * 100_000 + "\n"

    def timed() -> float:
        started = time.perf_counter()
        assert render(text, {}) == text  # no closing: plain text
        return time.perf_counter() - started

    assert min(timed() for _ in range(3)) < 0.1  # (a backtracking pattern took 71 s)
    assert render("a: {{" + " " * 100_000 + "x }}", {"x": "1"}) == "a: 1"
    assert render("{{" * 50_000 + "}", {}) == "{{" * 50_000 + "}"
    assert render("{{ {{ x }}", {"x": "1"}) == "{{ 1"
    assert render("{{{ x }}}", {"x": "1"}) == "1"
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="nesting deeper than 64 levels"):
        load_document("a: " + "[" * 100_000)
    assert time.perf_counter() - started < 0.5


def test_default_source_name() -> None:
    assert errors_of(load_document, "") == ["<input>: document is empty"]


# --- render_resource ------------------------------------------------------------------------

TEMPLATE = """\
type: Dataplane
mesh: {{ mesh }}
name: {{ name }}
networking:
  address: {{ address }}
  inbound:
  - port: {{ port.public }}
    servicePort: {{ port.app }}
    tags:
      kuma.io/service: {{ service }}
"""


def test_render_resource_end_to_end() -> None:
    items = [
        "mesh=default",
        "name=web-1",
        "address=10.0.0.1",
        "port.public=10000",
        "port.app=8080",
        "service=web",
    ]
    dp = parse_dataplane(render_resource(TEMPLATE, items, "dp.yaml"))
    assert (dp.mesh, dp.name, dp.networking.address) == ("default", "web-1", "10.0.0.1")
    inbound = dp.networking.inbound[0]
    assert (inbound.port, inbound.service_port, inbound.service) == (10000, 8080, "web")


def test_render_resource_missing_vars() -> None:
    assert errors_of(render_resource, TEMPLATE, ["mesh=default", "port.app=1"], "dp.yaml") == [
        "{{ name }}: no value given (use --dataplane-var name=...)",
        "{{ address }}: no value given (use --dataplane-var address=...)",
        "{{ port.public }}: no value given (use --dataplane-var port.public=...)",
        "{{ service }}: no value given (use --dataplane-var service=...)",
    ]


def test_render_resource_bad_vars_come_first() -> None:
    assert errors_of(render_resource, TEMPLATE, ["mesh"], "dp.yaml") == [
        'variable "mesh": missing "=" (expected key=value)'
    ]


def test_render_resource_value_that_breaks_yaml() -> None:
    assert errors_of(render_resource, "a: {{ v }}\n", ["v=[1"], "dp.yaml") == [
        "dp.yaml: invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"
    ]
