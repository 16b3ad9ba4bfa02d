"""Bad input at the command line: every ranged option of every command refused where it is parsed (exit
code 2, the option, the value and what is allowed), a path of the wrong kind named as such, nothing
written."""

import argparse
import re
import subprocess

import pytest

import training.cli as cli
from tests.conftest import METASTEER, ROOT

PATH_TYPES = (cli.onnx_model, cli.run_model, cli.any_model, cli.dataset_dir, cli.rosbag_dir, cli.pipeline_run)


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, sub-parser) of every command, bench commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))
    if prefix and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        yield prefix, parser


def _options(kind):
    cases = []
    for command, parser in _commands(cli.build_parser()):
        for action in parser._actions:
            if kind(action):
                cases.append(pytest.param(command, action, id=" ".join(command) + " " + (action.option_strings or [action.dest])[0]))
    return cases


def _run(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command, action", _options(lambda a: hasattr(a.type, "bounds")))
def test_every_ranged_option_refuses_a_value_out_of_its_range(command, action, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lo, hi = action.type.bounds
    for value in ([lo - 1] if lo is not None else []) + ([hi + 1] if hi is not None else []) + (["nan"] if action.type.__name__ == "float" else []):
        # the bad option first: argparse stops at it, before any other argument or any work
        err = _run([*command, action.option_strings[0], str(value)], capsys)
        assert f"argument {action.option_strings[0]}: {value}" in err and "allowed is" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command, action", _options(lambda a: a.type in PATH_TYPES))
def test_every_path_option_names_a_wrong_kind_of_file(command, action, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "card.md").write_text("# a model card\n")
    flag = action.option_strings[:1]
    name = flag[0] if flag else action.dest
    err = _run([*command, *flag, "card.md"], capsys)
    assert f"argument {name}: card.md is a markdown file" in err, err
    err = _run([*command, *flag, "missing"], capsys)
    assert f"argument {name}: missing: no such file or directory" in err, err
    if action.type is cli.onnx_model:  # a directory is named as one, not by a file only a run would hold
        (tmp_path / "m.onnx").mkdir()
        err = _run([*command, *flag, "m.onnx"], capsys)
        assert f"argument {name}: m.onnx is a directory, not an ONNX model" in err, err
        (tmp_path / "m.onnx").rmdir()
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]


@pytest.mark.parametrize("command, action", _options(lambda a: a.type is cli.out_dir))
def test_every_output_directory_option_refuses_a_file(command, action, tmp_path, monkeypatch, capsys):
    """An --out that names an existing file (a model, a dataset's manifest): refused where parsed, the file untouched."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"model bytes")
    err = _run([*command, action.option_strings[0], "m.onnx"], capsys)
    assert f"argument {action.option_strings[0]}: m.onnx is an ONNX model; expected a directory to write into" in err, err
    assert (tmp_path / "m.onnx").read_bytes() == b"model bytes" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_the_reported_cases(tmp_path, cli_env):
    """As a new user met them: a model card given as a model, a rate of 2, a negative frame count."""
    res = subprocess.run(METASTEER + ["evaluate", str(ROOT / "models" / "mse.md")], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "mse.md is a markdown file, neither an ONNX model (.onnx) nor a run directory" in res.stderr
    res = subprocess.run(METASTEER + ["compare", str(ROOT / "models" / "mse.onnx"), "--abnormal-rate", "2"], env=cli_env,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "argument --abnormal-rate: 2 is out of range: allowed is a number from 0.0 to 1.0" in res.stderr
    res = subprocess.run(METASTEER + ["collect", "--frames", "-5", "--out", str(tmp_path / "data")], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "argument --frames: -5 is out of range: allowed is an integer >= 1" in res.stderr
    assert "%" not in res.stderr and not (tmp_path / "data").exists()  # no progress bar, no file
    res = subprocess.run(METASTEER + ["compare", str(ROOT / "models" / "mse.onnx"), str(ROOT / "models" / "learned.onnx"), "--names", "a",
                                      "--out", str(tmp_path / "c")], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "argument --names: 'a' names 1 models, 2 were given" in res.stderr and not (tmp_path / "c").exists()


def test_bench_architecture_refuses_a_seed_given_twice(tmp_path, capsys):
    """A seed twice would pool its scenes twice and narrow every interval; refused before any work."""
    err = _run(["bench", "architecture", "--seeds", "0,1,0", "--work", str(tmp_path / "w")], capsys)
    assert "argument --seeds: 0,1,0: seeds must be distinct and >= 0" in err and not (tmp_path / "w").exists()
    assert cli.build_parser().parse_args(["bench", "architecture"]).seeds == [0, 1, 2, 3]


def _quoted_commands(text: str) -> list[list[str]]:
    """The words after ``metasteer`` of every command in a document's code (inline spans and fenced blocks),
    one list per command of a shell line (``a && metasteer b``, ``time metasteer c | tee``)."""
    code = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    commands = []
    for span in code:
        for part in re.split(r"&&|\|\||[;|\n]", span):
            words = part.split()
            at = next((i for i, w in enumerate(words) if w.rsplit("/", 1)[-1] == "metasteer" and words[i - 1:i] != ["run"]), None)  # not `ros2 run metasteer NODE`
            if at is not None and at + 1 < len(words):
                commands.append(words[at + 1:])
    return commands


def test_every_flag_the_docs_give_a_command_is_one_it_takes():
    """The README and docs quote commands to copy: a command or flag renamed in the code and not there is a
    command that fails. Placeholders (`metasteer CMD -h`) are skipped; `bench {a,b}` names each command."""
    parsers = {" ".join(command): parser for command, parser in _commands(cli.build_parser())}
    unknown, checked = [], 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md")), *sorted((ROOT / "models").glob("*.md"))]:
        for words in _quoted_commands(doc.read_text()):
            quote = " ".join(words)[:70]
            names = [w for w in words[:2] if not w.startswith(("-", "["))]
            if not names or re.match(r"[A-Z<{.]", names[0]):
                continue  # a placeholder
            if len(names) == 2 and names[1].startswith("{"):
                unknown += [f"{doc.name}: no command `metasteer {names[0]} {c}`" for c in names[1].strip("{}").split(",")
                            if f"{names[0]} {c}" not in parsers]
                continue
            command = next((c for c in (" ".join(names), names[0]) if c in parsers), None)
            if command is None:
                unknown.append(f"{doc.name}: no command `metasteer {names[0]}` ({quote})")
                continue
            known = {o for a in parsers[command]._actions for o in a.option_strings}
            flags = [w.split("=")[0].strip("[](){},.'\"") for w in words]
            unknown += [f"{doc.name}: `metasteer {command}` has no {f} ({quote})" for f in flags if f.startswith("--") and f not in known]
            checked += 1
    assert checked > 40 and not unknown, "\n".join(unknown)
