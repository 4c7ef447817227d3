"""The documentation holds: the README stays short, every relative link in README.md and docs/*.md
resolves (files, and #anchors by GitHub's rules for markdown headings), and the generated configuration
reference is what the config models say today."""
import importlib
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<(?:img|a)\s[^>]*?(?:src|href)=\"([^\"]+)\"", re.I)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_config_reference", ROOT / "docs" / "make_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# -- links ------------------------------------------------------------------------------------------
def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")           # HTML tags, code marks
    text = re.sub(r"(\*\*|__|\*)", "", text)                        # emphasis (a lone '_' stays, as on GitHub)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text, repeats numbered as GitHub does (x, x-1, x-2)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """``file:line: link: why`` for every relative link of a markdown file that does not resolve."""
    problems = []
    text = path.read_text(encoding="utf-8")
    for number, line in _prose_lines(text):
        line = re.sub(r"`[^`]*`", "", line)     # links inside code spans are not links
        for target in _LINK.findall(line) + _HTML_SRC.findall(line):
            if _SCHEME.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.name}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no file {dest}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading #{anchor} in {dest.name}")
    return problems


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_door_not_a_manual():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = _pages()
    assert len(pages) > 10, "docs/ holds the pages"
    problems = [p for page in pages for p in broken_links(page)]
    assert problems == []


def test_every_doc_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in readme]
    assert missing == []


def test_slugs_follow_githubs_rules():
    assert slug("The loop's speed") == "the-loops-speed"
    assert slug("Slot states: every slot knows its own piece") == "slot-states-every-slot-knows-its-own-piece"
    assert slug("Rollouts (`gemsight-deploy rollout`)") == "rollouts-gemsight-deploy-rollout"
    assert slug("INT8 on x86 CPUs without VNNI") == "int8-on-x86-cpus-without-vnni"
    assert slug("**Bold** and [a link](x.md) — 2 × 3") == "bold-and-a-link--2--3"
    assert slug("snake_case stays") == "snake_case-stays"
    text = "# A\n## A\n```\n# not a heading\n```\n### A\n"
    assert anchors(text) == {"a", "a-1", "a-2"}


def test_broken_links_are_named_with_their_file_and_line(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Known part\n")
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        # Page

        Fine: [other](other.md), [part](other.md#known-part), [here](#page), [web](https://example.com/x#y).
        Broken: [gone](missing.md) and [part](other.md#unknown-part).
        ![picture](missing.png) and [self](#nowhere)

        ```
        [in a code block](nothing.md)
        ```
        `[in a code span](nothing.md)`
        """))
    assert broken_links(page) == [
        f"page.md:4: missing.md: no file {tmp_path / 'missing.md'}",
        "page.md:4: other.md#unknown-part: no heading #unknown-part in other.md",
        f"page.md:5: missing.png: no file {tmp_path / 'missing.png'}",
        "page.md:5: #nowhere: no heading #nowhere in page.md",
    ]


# -- the configuration reference -------------------------------------------------------------------
def test_the_configuration_reference_is_current():
    committed = gen.OUT.read_text(encoding="utf-8")
    assert committed == gen.render(), "docs/configuration-reference.md is stale: python docs/make_config_reference.py"


def test_the_reference_covers_every_config_file_and_nested_key():
    text = gen.OUT.read_text(encoding="utf-8")
    for heading in ("## edge.yaml", "## kiosk.yaml", "## hq.yaml"):
        assert heading in text
    for key in ("`cameras[].slots[].rect`", "`cameras[].reconnect.stall_s`", "`publish.curve.allowed_clients`",
                "`runtime.options.exact_int8` (with `name: onnxruntime`)", "`devices[].cameras.<name>.slots`",
                "`webhook.quiet_hours.start`", "`stores[].region`"):
        assert key in text, key
    assert "| `web.port` | int (≥ 0, ≤ 65535) | `8480` |" in text.split("## hq.yaml")[1], "hq's own default"
    assert " at 0x" not in text, "no object reprs"


MODELS_V1 = '''
from typing import Annotated, Literal, Union
from pydantic import BaseModel, ConfigDict, Field

class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(3, ge=1, description="How big.")
    note: str | None = None

class A(BaseModel):
    kind: Literal["a"] = Field(description="Tag.")
    alpha: float = Field(0.5, description="Alpha.")

class B(BaseModel):
    kind: Literal["b"] = Field(description="Tag.")

class Top(BaseModel):
    name: str = Field(description="The name.")
    leaf: Leaf = Field(default_factory=lambda: Leaf(size=7), description="A leaf.")
    leaves: tuple[Leaf, ...] = Field((), description="Many leaves.")
    by_name: dict[str, Leaf] = Field(default_factory=dict, description="Leaves by name.")
    choice: Annotated[Union[A, B], Field(discriminator="kind")] = Field(description="One of two.")
'''


@pytest.fixture()
def fake_models(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "gemsight_fake_config.py"

    def write(source: str) -> dict[str, str]:
        module.write_text(source)
        sys.modules.pop("gemsight_fake_config", None)
        importlib.invalidate_caches()
        return {"fake.yaml": "gemsight_fake_config:Top"}

    yield write
    sys.modules.pop("gemsight_fake_config", None)


def test_nested_models_are_expanded_with_their_paths_and_defaults(fake_models):
    text = gen.render(fake_models(MODELS_V1))
    assert "| `leaf.size` | int (≥ 1) | `7` | How big. |" in text, "the default comes from the parent's instance"
    assert "| `leaves[].size` | int (≥ 1) | `3` | How big. |" in text
    assert "| `by_name.<name>.note` | str \\| null | `null` | — |" in text
    assert "| `choice` | mapping (kind: a, kind: b) | required | One of two. |" in text
    assert "| `choice.alpha` (with `kind: a`) | float | `0.5` | Alpha. |" in text
    assert "; 3 keys without a description." in text
    assert gen.undocumented(fake_models(MODELS_V1)) == {
        "fake.yaml": ["leaf.note", "leaves[].note", "by_name.<name>.note"]}


def test_a_changed_field_makes_the_reference_stale(fake_models, tmp_path):
    out = tmp_path / "reference.md"
    models = fake_models(MODELS_V1)
    out.write_text(gen.render(models))
    for changed in (MODELS_V1.replace('"How big."', '"How large."'),        # a description
                    MODELS_V1.replace("Field(3, ge=1", "Field(4, ge=1"),     # a default
                    MODELS_V1.replace("size: int", "size: float"),           # a type
                    MODELS_V1.replace('    note: str | None = None\n', '')):  # a field removed
        assert gen.render(fake_models(changed)) != out.read_text(), changed


def test_check_mode_fails_on_a_stale_reference_in_one_line(tmp_path, caplog):
    stale = tmp_path / "reference.md"
    stale.write_text(gen.render().replace("Device id; part of every ZeroMQ topic.", "An old description."))
    assert gen.main(["--check", "--out", str(stale)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"error: {stale} is not current: run python docs/make_config_reference.py"]
    assert "An old description." in stale.read_text(), "--check writes nothing"
    assert gen.main(["--check", "--out", str(tmp_path / "absent.md")]) == 1


@pytest.mark.parametrize("spec, says", [
    ("edge.config.DeviceConfig", "expected 'module:Model'"),
    ("edge.no_such_module:DeviceConfig", "cannot import edge.no_such_module"),
    ("edge.config:NoSuchModel", "edge.config has no pydantic model 'NoSuchModel'"),
    ("edge.config:logger", "edge.config has no pydantic model 'logger'"),
])
def test_a_model_that_cannot_be_loaded_is_named_in_one_line(spec, says, monkeypatch, tmp_path, caplog):
    with pytest.raises(gen.ReferenceError) as exc:
        gen.render({"edge.yaml": spec})
    assert str(exc.value).startswith(f"model {spec!r}: ") and says in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.setattr(gen, "MODELS", {"edge.yaml": spec})
    out = tmp_path / "reference.md"
    out.write_text("kept")
    assert gen.main(["--out", str(out)]) == 2
    assert out.read_text() == "kept", "nothing is written when a model cannot be loaded"


def test_a_model_that_contains_itself_is_refused(fake_models):
    models = fake_models('''
from __future__ import annotations
from pydantic import BaseModel, Field

class Top(BaseModel):
    child: Top | None = Field(None, description="Loops.")
''')
    with pytest.raises(gen.ReferenceError, match="^model Top contains itself at child$"):
        gen.render(models)
