"""keepalived.conf's grammar (hacontrol.importer.grammar) on small inputs and on every sample.

Each rule is checked against what keepalived 2.2's parser does with the same text; each
bad input must give one GrammarError naming its file and line, never another exception.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from hacontrol.importer.grammar import (
    GrammarError,
    MemorySource,
    Statement,
    expand_braces,
    parse_text,
    read_config,
    walk,
)

SAMPLES = sorted(glob.glob("/usr/share/doc/keepalived/samples/keepalived.conf.*"))


def words(tree: tuple[Statement, ...]) -> list[tuple[str, ...]]:
    return [st.words for st in walk(tree)]


def lines(tree: tuple[Statement, ...]) -> list[tuple[str, int]]:
    return [(st.file, st.line) for st in walk(tree)]


# ---- comments, quotes, blocks -------------------------------------------------------------


def test_comments_bang_and_hash_outside_quotes() -> None:
    tree = parse_text(
        '! a comment\n# another\nrouter_id LVS # trailing\nauth_pass "a#b!c" ! after\npath /x\\#y\n'
    )
    assert words(tree) == [("router_id", "LVS"), ("auth_pass", "a#b!c"), ("path", "/x#y")]


def test_comment_char_glued_to_a_word_cuts_it_as_keepalived_does() -> None:
    assert words(parse_text("auth_pass ab#cd\n")) == [("auth_pass", "ab")]


def test_quoted_string_is_one_word_without_quotes() -> None:
    tree = parse_text('script "/bin/check --flag x" extra\n')
    assert words(tree) == [("script", "/bin/check --flag x", "extra")]
    assert tree[0].text == 'script "/bin/check --flag x" extra'


def test_blocks_on_one_line_and_on_many() -> None:
    # keepalived cuts a line only at braces: `delay_loop 6` needs its own line here too.
    one = parse_text("vs 192.0.2.1 80 {\ndelay_loop 6\n rs 198.51.100.1 80 { weight 2 } }\n")
    many = parse_text(
        "vs 192.0.2.1 80\n{\n  delay_loop 6\n  rs 198.51.100.1 80 {\n    weight 2\n  }\n}\n"
    )
    for tree in (one, many):
        (vs,) = tree
        assert vs.words == ("vs", "192.0.2.1", "80")
        assert vs.block is not None
        assert [st.words for st in vs.block] == [("delay_loop", "6"), ("rs", "198.51.100.1", "80")]
        assert vs.block[1].block is not None
        assert vs.block[1].block[0].words == ("weight", "2")
    assert [line for _, line in lines(many)] == [1, 3, 4, 5]
    assert [line for _, line in lines(one)] == [1, 2, 3, 3]


def test_braces_glued_to_words_and_inside_quotes() -> None:
    tree = parse_text('a{b "c{d}"}\n')
    (a,) = tree
    assert a.words == ("a",)
    assert a.block is not None
    assert a.block[0].words == ("b", "c{d}")


def test_empty_block_and_statement_without_block() -> None:
    (a, b) = parse_text("a {\n}\nb\n")
    assert a.block == ()
    assert b.block is None


def test_crlf_line_ends() -> None:
    tree = parse_text("a 1\r\nb {\r\n c 2\r\n}\r\n")
    assert words(tree) == [("a", "1"), ("b",), ("c", "2")]


# ---- conditionals -------------------------------------------------------------------------


def test_conditionals_select_by_config_id() -> None:
    text = "@high priority 170\n@low priority 85\n@^high not_high 1\n@high\nplain 1\n"
    assert words(parse_text(text, "high")) == [("priority", "170"), ("plain", "1")]
    assert words(parse_text(text, "low")) == [("priority", "85"), ("not_high", "1"), ("plain", "1")]
    assert words(parse_text(text, "other")) == [("not_high", "1"), ("plain", "1")]


def test_conditional_keeps_the_line_number() -> None:
    tree = parse_text("a {\n@x  b 1\n}\n", "x")
    assert [(st.words, st.line) for st in walk(tree)] == [(("a",), 1), (("b", "1"), 2)]


# ---- definitions and sequences ------------------------------------------------------------


def test_definitions_plain_and_braced_and_redefined() -> None:
    text = "$VIP=192.0.2.10\n$PORT = 80\nvs $VIP ${PORT}\n$PORT=443\nvs $VIP $PORT\n"
    assert words(parse_text(text)) == [("vs", "192.0.2.10", "80"), ("vs", "192.0.2.10", "443")]


def test_definition_of_a_definition_is_replaced_again() -> None:
    assert words(parse_text("$A=1\n$B=x$A\nk ${B}\n")) == [("k", "x1")]


def test_a_reference_glued_to_another_is_no_reference() -> None:
    # keepalived: `$a$b` is `$a` followed by `$` (not a place a name may end), then `$b`.
    assert words(parse_text("$a=1\n$b=2\nk ${a}${b} $a,$b\n")) == [("k", "12", "1,2")]
    with pytest.raises(GrammarError, match=r"\$a2 is not defined"):
        parse_text("$a=1\n$b=2\nk $a$b\n")


def test_a_dollar_that_is_no_reference_stays() -> None:
    # `$1` is no name; `$a-b` does not end where a reference may end.
    assert words(parse_text("$a=1\nk $1 $a-b\n")) == [("k", "$1", "$a-b")]


def test_multiline_definition_expands_to_several_statements() -> None:
    text = "$RS=real_server 198.51.100.1 80 { \\\n  weight 2 \\\n}\nvs 192.0.2.1 80 {\n$RS\n}\n"
    (vs,) = parse_text(text)
    assert vs.block is not None
    (rs,) = vs.block
    assert rs.words == ("real_server", "198.51.100.1", "80")
    assert rs.block is not None
    assert rs.block[0].words == ("weight", "2")
    assert rs.line == 5


def test_multiline_definition_ends_at_a_blank_line() -> None:
    text = "$M=a 1 \\\n  b 2 \\\n\nc 3\n$M\n"
    assert words(parse_text(text)) == [("c", "3"), ("a", "1"), ("b", "2")]


def test_instance_definition_is_the_config_id() -> None:
    assert words(parse_text("router_id r_${_INSTANCE}\n", "high")) == [("router_id", "r_high")]


def test_seq_forms() -> None:
    assert words(parse_text("~SEQ(i, 3) k$i\n")) == [("k1",), ("k2",), ("k3",)]
    assert words(parse_text("~SEQ(i, 5, 3) k$i\n")) == [("k5",), ("k4",), ("k3",)]
    assert words(parse_text("~SEQ(i, 0, 5, 10) k$i\n")) == [("k0",), ("k5",), ("k10",)]
    assert words(parse_text("~SEQx(i, 9, 11) k$i\n")) == [("k9",), ("ka",), ("kb",)]
    assert words(parse_text("$N=2\n~SEQ(i, 1, $N) k$i\n")) == [("k1",), ("k2",)]


def test_nested_seq_and_seq_from_a_definition() -> None:
    assert words(parse_text("~SEQ(i, 1, 2) ~SEQ(j, 1, 2) k${i}${j}\n")) == [
        ("k11",),
        ("k12",),
        ("k21",),
        ("k22",),
    ]
    assert words(parse_text("$S=~SEQ(i, 1, 2) rs 198.51.100.$i 80\n$S\n")) == [
        ("rs", "198.51.100.1", "80"),
        ("rs", "198.51.100.2", "80"),
    ]


def test_seq_generates_blocks() -> None:
    (vs,) = parse_text("vs 192.0.2.1 80 {\n~SEQ(n, 1, 3) rs 198.51.100.$n 80 { weight $n }\n}\n")
    assert vs.block is not None
    assert [(rs.words[1], rs.block[0].words[1] if rs.block else None) for rs in vs.block] == [
        ("198.51.100.1", "1"),
        ("198.51.100.2", "2"),
        ("198.51.100.3", "3"),
    ]


# ---- includes -----------------------------------------------------------------------------


def src(files: dict[str, str], unreadable: frozenset[str] = frozenset()) -> MemorySource:
    return MemorySource(dict(files), unreadable)


def test_include_relative_to_the_including_file_with_glob_sorted() -> None:
    files = {
        "/etc/ka/keepalived.conf": "a 1\ninclude conf.d/*.conf\nz 1\n",
        "/etc/ka/conf.d/20-b.conf": "b 1\ninclude ../more/c.conf\n",
        "/etc/ka/conf.d/10-a.conf": "a 2\n",
        "/etc/ka/more/c.conf": "c 1\n",
    }
    tree = read_config("/etc/ka/keepalived.conf", "x", src(files))
    assert [(st.words, st.file, st.line) for st in tree] == [
        (("a", "1"), "/etc/ka/keepalived.conf", 1),
        (("a", "2"), "/etc/ka/conf.d/10-a.conf", 1),
        (("b", "1"), "/etc/ka/conf.d/20-b.conf", 1),
        (("c", "1"), "/etc/ka/more/c.conf", 1),
        (("z", "1"), "/etc/ka/keepalived.conf", 3),
    ]


def test_include_with_braces_and_inside_a_block() -> None:
    files = {
        "/k/main.conf": "vs 192.0.2.1 80 {\ninclude rs-{a,b}.conf\n}\n",
        "/k/rs-a.conf": "rs 198.51.100.1 80\n",
        "/k/rs-b.conf": "rs 198.51.100.2 80\n",
    }
    (vs,) = read_config("/k/main.conf", "x", src(files))
    assert vs.block is not None
    assert [st.words[1] for st in vs.block] == ["198.51.100.1", "198.51.100.2"]


def test_definitions_cross_includes() -> None:
    files = {"/k/main.conf": "include defs.conf\nk $V\n", "/k/defs.conf": "$V=7\n"}
    assert words(read_config("/k/main.conf", "x", src(files))) == [("k", "7")]


def test_empty_glob_is_not_an_error_as_in_keepalived() -> None:
    files = {"/k/main.conf": "include conf.d/*.conf\nk 1\n"}
    assert words(read_config("/k/main.conf", "x", src(files))) == [("k", "1")]


def test_include_on_the_real_filesystem(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.conf").write_text("b 1\n")
    (tmp_path / "d" / "sub.conf").mkdir()  # a folder matched by the glob is skipped
    (tmp_path / "main.conf").write_text("a 1\ninclude d/*.conf\n")
    tree = read_config(str(tmp_path / "main.conf"), "x")
    assert [(st.words, os.path.basename(st.file)) for st in tree] == [
        (("a", "1"), "main.conf"),
        (("b", "1"), "one.conf"),
    ]


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a {\n b 1\n", 1, "'{' of a is never closed"),
        ("a {\n}\n}\n", 3, "'}' closes no block"),
        ("{\n", 1, "'{' with no keyword before it"),
        ("k 1\nk $UNDEF\n", 2, "$UNDEF is not defined"),
        ("k ${UNDEF}\n", 1, "$UNDEF is not defined"),
        ('k "open\n', 1, "unterminated quote"),
        ("$A=$A\nk $A\n", 2, "refers to itself"),
        ("$A=$A $A\nk $A\n", 2, "line longer than"),
        ("~SEQ(i) k\n", 1, "invalid ~SEQ"),
        ("~SEQ(i, 1, -1, 5) k\n", 1, "invalid ~SEQ values"),
        ("~SEQ(i, 1, x) k\n", 1, "invalid ~SEQ number"),
        ("~SEQ(i, 1, 100000000) k\n", 1, "~SEQ of more than"),
        ("~SEQx(i, -1, 2) k\n", 1, "only for positive"),
        ("k ${_RANDOM}\n", 1, "$_RANDOM"),
        ("$M=a \\\n b\nk $M x\n", 3, "multi-line definition"),
        ("a {\n" * 200, 101, "nested deeper"),
    ],
)
def test_bad_input_names_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(GrammarError) as info:
        parse_text(text, "x", "site.conf")
    assert info.value.file == "site.conf"
    assert info.value.line == line
    assert message in info.value.message
    assert str(info.value).startswith(f"site.conf:{line}: ")


def test_include_missing_names_the_include_line() -> None:
    files = {"/k/main.conf": "a 1\ninclude nowhere.conf\n"}
    with pytest.raises(GrammarError) as info:
        read_config("/k/main.conf", "x", src(files))
    assert (info.value.file, info.value.line) == ("/k/main.conf", 2)
    assert "include /k/nowhere.conf: No such file or directory" in info.value.message


def test_include_unreadable() -> None:
    files = {"/k/main.conf": "include secret.conf\n", "/k/secret.conf": "a 1\n"}
    with pytest.raises(GrammarError) as info:
        read_config("/k/main.conf", "x", src(files, frozenset({"/k/secret.conf"})))
    assert (info.value.file, info.value.line) == ("/k/main.conf", 1)
    assert "Permission denied" in info.value.message


def test_include_of_a_folder_on_the_filesystem(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.conf").write_text("include sub\n")
    with pytest.raises(GrammarError) as info:
        read_config(str(tmp_path / "main.conf"), "x")
    assert info.value.line == 1
    assert "Is a directory" in info.value.message


@pytest.mark.parametrize(
    "files",
    [
        {"/k/a.conf": "include a.conf\n"},
        {"/k/a.conf": "x 1\ninclude b.conf\n", "/k/b.conf": "include ./a.conf\n"},
        {"/k/a.conf": "include *.conf\n", "/k/b.conf": "y 1\n"},
    ],
)
def test_include_loop(files: dict[str, str]) -> None:
    with pytest.raises(GrammarError) as info:
        read_config("/k/a.conf", "x", src(files))
    assert "include loop: /k/a.conf -> " in info.value.message
    assert info.value.line is not None


def test_main_file_missing() -> None:
    with pytest.raises(GrammarError) as info:
        read_config("/k/none.conf", "x", src({}))
    assert str(info.value) == "/k/none.conf: cannot read: No such file or directory"


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [(b"a 1\nb \xff\n", 2, "not UTF-8"), (b"a 1\n\nb\0\n", 3, "NUL byte")],
)
def test_binary_files(data: bytes, line: int, message: str) -> None:
    with pytest.raises(GrammarError) as info:
        read_config("/k/a.conf", "x", MemorySource({"/k/a.conf": data}))
    assert info.value.line == line
    assert message in info.value.message


def test_unbalanced_across_an_include_names_the_open_block() -> None:
    files = {"/k/a.conf": "vs 1 {\ninclude b.conf\n", "/k/b.conf": "rs 2 {\n}\n"}
    with pytest.raises(GrammarError) as info:
        read_config("/k/a.conf", "x", src(files))
    assert (info.value.file, info.value.line) == ("/k/a.conf", 1)


def test_brace_expansion() -> None:
    assert expand_braces("a{b,c}d{1,2}") == ["abd1", "abd2", "acd1", "acd2"]
    assert expand_braces("plain{x}") == ["plain{x}"]


# ---- Debian's samples ---------------------------------------------------------------------


def test_samples_are_present() -> None:
    assert len(SAMPLES) == 25, SAMPLES


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_reads_with_lines_for_every_statement(path: str) -> None:
    tree = read_config(path, "high")
    statements = list(walk(tree))
    assert statements
    physical = Path(path).read_text().splitlines()
    for st in statements:
        assert st.file == path
        # the keyword is on the line it is reported at (after a conditional, if any)
        assert st.keyword in physical[st.line - 1], (st.where, st.words)


def test_conditional_sample_selects_per_director() -> None:
    path = "/usr/share/doc/keepalived/samples/keepalived.conf.conditional_conf"
    prio = {
        cid: [st.args for st in walk(read_config(path, cid)) if st.keyword == "priority"]
        for cid in ("high", "low", "other")
    }
    assert prio == {"high": [("170",)], "low": [("85",)], "other": []}
