"""The Python runtime's data stack, all of it, in real guests: each major bundled package
imports and computes (numpy, pandas, scipy, scikit-learn, statsmodels, matplotlib, seaborn,
Pillow, lxml, sympy, networkx, openpyxl); matplotlib's data is served (extracted once into
the cache, checked); every Python guest has a private in-memory /tmp and the environment
that points matplotlib at it; and ``python_path`` adds pure-Python packages from host
directories and wheels.

Imports take seconds on the metered runtime: the packages are imported once, by one
pre-initialised sandbox (``stack``), and each test is one fresh call from that state."""

from __future__ import annotations

import io
import json
import os
import struct
import textwrap
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws
from tests.conftest import _link_prepared
from wasm_sandbox._guests import _pydata
from wasm_sandbox._invocation import sandbox_core

LIMITS: dict[str, Any] = {"memory_limit": "1GiB", "timeout_duration": 180, "max_fuel": None}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def python(
    source: str, setup: str | None = None, mounts: tuple[ws.Mount, ...] = (), **options: Any
) -> ws.WasmSandbox:
    """A Python sandbox of ``source`` with generous limits, ``mounts`` and other builder
    options as keywords; pre-initialised when ``setup`` is given."""
    builder = ws.WasmSandbox.builder().source(source).language("python")
    for name, value in {**LIMITS, **options}.items():
        getattr(builder, name)(value)
    for mount in mounts:
        builder.mount(mount)
    if setup is not None:
        builder.preinitialize(setup)
    return builder.build()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk; fails on anything else."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- every major package, one computation each ---------------------------------------------

STACK_SETUP = """
import numpy as np
import pandas as pd
import scipy.integrate, scipy.optimize, scipy.stats
import sklearn.linear_model
import statsmodels.api as sm
import matplotlib.pyplot as plt
import seaborn as sns
import PIL.Image, PIL.ImageDraw
import lxml.etree
import sympy
import networkx as nx
import openpyxl
"""

STACK = """
import io, tempfile

def numpy_pandas():
    frame = pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
    solved = np.linalg.solve(np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([3.0, 5.0]))
    return {"groups": frame.groupby("k")["v"].sum().to_dict(), "solve": solved.round(9).tolist()}

def scipy_():
    best = scipy.optimize.minimize_scalar(lambda x: (x - 2.0) ** 2 + 1.0)
    area, _ = scipy.integrate.quad(np.sin, 0.0, np.pi)
    return [float(best.x), float(area), float(scipy.stats.norm.cdf(1.959963984540054))]

def sklearn_():
    x = np.arange(20.0).reshape(-1, 1)
    model = sklearn.linear_model.LinearRegression().fit(x, 3.0 * x.ravel() + 2.0)
    return [float(model.coef_[0]), float(model.intercept_), float(model.score(x, 3.0 * x.ravel() + 2.0))]

def statsmodels_():
    x = np.arange(10.0)
    y = 1.5 + 0.5 * x + np.array([0.1, -0.1] * 5)
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    return {"params": fit.params.tolist(), "polyfit": np.polyfit(x, y, 1).tolist(), "r2": fit.rsquared}

def matplotlib_(path):
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([1, 2, 3], [1, 4, 9], label="squares")
    ax.set_title("chart")
    ax.legend()
    fig.savefig(path)
    plt.close(fig)
    frame = pd.DataFrame({"x": ["a", "b"], "y": [1.0, 2.0]})
    grid = sns.barplot(data=frame, x="x", y="y")
    grid.figure.savefig(path + ".seaborn.png", dpi=50)
    return plt.get_backend()

def pillow(path):
    image = PIL.Image.new("RGB", (64, 32), (255, 255, 255))
    PIL.ImageDraw.Draw(image).rectangle((0, 0, 31, 31), fill=(255, 0, 0))
    image.save(path)
    again = PIL.Image.open(path)
    return [list(again.size), list(again.getpixel((5, 5))), list(again.getpixel((40, 5)))]

def lxml_():
    root = lxml.etree.fromstring(b"<items><i n='2'/><i n='3'/><i n='5'/></items>")
    return [float(root.xpath("sum(//i/@n)")), lxml.etree.tostring(root[0]).decode()]

def sympy_():
    x = sympy.symbols("x")
    return [str(sympy.integrate(x ** 2, (x, 0, 3))), sorted(int(r) for r in sympy.solve(x ** 2 - 4, x)),
            str(sympy.diff(sympy.sin(x) * x, x))]

def networkx_():
    graph = nx.Graph()
    graph.add_weighted_edges_from([("a", "b", 1), ("b", "c", 2), ("a", "c", 5), ("c", "d", 1)])
    return [nx.shortest_path(graph, "a", "d", weight="weight"),
            nx.shortest_path_length(graph, "a", "d", weight="weight")]

def openpyxl_():
    book = openpyxl.Workbook()
    sheet = book.active
    for row in range(1, 6):
        sheet.cell(row=row, column=1, value=row * 10)
    sheet["B1"] = "=SUM(A1:A5)"
    with tempfile.NamedTemporaryFile(suffix=".xlsx", delete=False) as f:
        book.save(f.name)
    again = openpyxl.load_workbook(f.name).active
    return [sum(again.cell(row=r, column=1).value for r in range(1, 6)), again["B1"].value, f.name[:5]]
"""


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("out")


@pytest.fixture(scope="module")
def stack(out_dir: Path) -> ws.WasmSandbox:
    """Every major package imported once, at build; calls are fresh from that state."""
    return python(STACK, STACK_SETUP, (ws.Mount.directory(out_dir, "/out", read_only=False),))


COMPUTATIONS: list[tuple[str, Any]] = [
    ("numpy_pandas", {"groups": {"a": 4.0, "b": 2.0}, "solve": [0.8, 1.4]}),
    ("scipy_", [pytest.approx(2.0, abs=1e-6), pytest.approx(2.0), pytest.approx(0.975)]),
    ("sklearn_", [pytest.approx(3.0), pytest.approx(2.0), pytest.approx(1.0)]),
    ("lxml_", [10.0, '<i n="2"/>']),
    ("sympy_", ["9", [-2, 2], "x*cos(x) + sin(x)"]),
    ("networkx_", [["a", "b", "c", "d"], 4]),
    ("openpyxl_", [150, "=SUM(A1:A5)", "/tmp/"]),
]


@pytest.mark.timeout(240)  # the first builds the state: every package imported, ~10 s
@pytest.mark.parametrize(
    ("function", "expected"), COMPUTATIONS, ids=[name.strip("_") for name, _ in COMPUTATIONS]
)
def test_each_bundled_package_computes(stack: ws.WasmSandbox, function: str, expected: Any) -> None:
    """One real computation per package, checked by value (openpyxl's file goes through the
    private /tmp, by ``tempfile``)."""
    assert stack.call(function) == expected


def test_statsmodels_regression_matches_numpy(stack: ws.WasmSandbox) -> None:
    """statsmodels' OLS finds the line the data was made from, as numpy's polyfit does."""
    fit = stack.call("statsmodels_")
    assert fit["params"] == pytest.approx([1.5, 0.5], abs=0.05)
    assert fit["params"] == pytest.approx(fit["polyfit"][::-1])
    assert 0.99 < fit["r2"] < 1.0


def test_matplotlib_and_seaborn_save_pngs_to_a_mount(stack: ws.WasmSandbox, out_dir: Path) -> None:
    """A plot saved with the Agg backend to a writable mount is a real PNG of the figure's
    size, read back on the host; seaborn (on matplotlib and pandas) draws too."""
    assert stack.call("matplotlib_", "/out/chart.png").lower() == "agg"
    chart = (out_dir / "chart.png").read_bytes()
    assert png_size(chart) == (400, 300) and len(chart) > 5_000
    assert png_size((out_dir / "chart.png.seaborn.png").read_bytes())[0] > 100


def test_pillow_writes_and_reads_a_png(stack: ws.WasmSandbox, out_dir: Path) -> None:
    """Pillow draws, saves a PNG to the mount and reads its pixels back."""
    assert stack.call("pillow", "/out/box.png") == [[64, 32], [255, 0, 0], [255, 255, 255]]
    assert png_size((out_dir / "box.png").read_bytes()) == (64, 32)


# --- matplotlib without pre-initialisation, in a session, and pre-initialised --------------

PLOT = """
import io
import matplotlib.pyplot as plt

def plot(values):
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot(values)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
"""


@pytest.mark.timeout(240)
def test_matplotlib_runs_in_a_plain_sandbox(tmp_path: Path) -> None:
    """No pre-initialisation: ``import matplotlib`` reads its data from the served
    directory, and a script saves its figure to a mount."""
    code = (
        "import matplotlib\nimport matplotlib.pyplot as plt\n"
        "print(matplotlib.get_data_path(), matplotlib.get_configdir())\n"
        "plt.plot([3, 1, 2])\nplt.savefig('/out/chart.png')\n"
    )
    sandbox = python(code, mounts=(ws.Mount.directory(tmp_path, "/out", read_only=False),))
    result = sandbox.run()
    assert result.exit_code == 0, result.stderr.decode()
    data_path, config_dir = result.stdout.decode().split()
    assert data_path == "/usr/local/lib/python315.zip/matplotlib/mpl-data"
    assert config_dir == "/tmp/matplotlib"
    assert png_size((tmp_path / "chart.png").read_bytes()) == (640, 480)


@pytest.mark.timeout(240)
def test_matplotlib_works_in_a_session_saved_and_loaded(tmp_path: Path) -> None:
    """A session plots, checkpoints and rolls back, is saved (its private /tmp, matplotlib's
    font list included) and loaded, and plots again: the font files matplotlib held open
    while drawing are released after each statement, so the state can be captured."""
    sandbox = python(PLOT)
    path = tmp_path / "plots.wsbx"
    with sandbox.session() as session:
        first = session.call("plot", [1, 2, 3])
        assert png_size(first) == (100, 100)
        checkpoint = session.checkpoint()
        session.exec("plt.rcParams['lines.linewidth'] = 9")
        session.rollback(checkpoint)
        assert session.eval("plt.rcParams['lines.linewidth']") == 1.5
        session.save(path)
    with sandbox.load_session(path) as again:
        assert again.eval("sorted(__import__('os').listdir('/tmp/matplotlib'))")
        assert again.call("plot", [1, 2, 3]) == first


@pytest.mark.timeout(240)
def test_matplotlib_preinitialised_each_call_fresh() -> None:
    """``preinitialize("import matplotlib...")``, with a setup that draws text (matplotlib
    then holds font files open, released before the state is taken): the font list it built
    in /tmp is part of the state, each call starts from it, and what a call leaves in /tmp
    is not seen by the next."""
    source = PLOT + textwrap.dedent(
        """
        import os

        def leave():
            seen = sorted(os.listdir('/tmp'))
            open('/tmp/left', 'w').write('x')
            return seen
        """
    )
    setup = "import io, matplotlib\nimport matplotlib.pyplot as plt\nplt.title('warm')\n"
    sandbox = python(source, setup + "plt.savefig(io.BytesIO())\nplt.close()\n")
    assert sandbox.call("leave") == sandbox.call("leave") == ["matplotlib"]
    assert png_size(sandbox.call("plot", [2, 1])) == (100, 100)


# --- the private /tmp and the environment ----------------------------------------------------

TMP_PROBE = """
import errno, os, tempfile

def probe(megabytes):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        name = f.name
    try:
        with open(name, 'wb') as f:
            f.write(bytes(megabytes << 20))
        written = os.path.getsize(name)
    except OSError as exc:
        written = errno.errorcode.get(exc.errno)
    return [os.path.dirname(name), written, sorted(os.listdir('/tmp')), dict(os.environ)]
"""


def test_every_python_guest_has_a_private_capped_tmp() -> None:
    """``tempfile`` works in /tmp; what one call writes there the next does not see; past
    16 MiB a write fails with ENOSPC; the environment names /tmp and matplotlib's settings."""
    sandbox = python(TMP_PROBE, timeout_duration=30)
    where, written, listing, env = sandbox.call("probe", 1)
    assert (where, written, len(listing)) == ("/tmp", 1 << 20, 1)
    assert env == {"TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "MPLBACKEND": "Agg"}
    again = sandbox.call("probe", 1)[2]
    assert len(again) == 1 and again != listing  # its own file only: the first call's is gone
    assert sandbox.call("probe", 20)[1] == "ENOSPC"


def test_the_sandboxs_own_environment_and_tmp_mount_win(tmp_path: Path) -> None:
    """A variable the sandbox sets replaces the default; a run's own environment keeps the
    defaults under it; a memory_fs at /tmp replaces the private one (its own cap), and a
    mount below /tmp leaves the guest without one."""
    sandbox = python(TMP_PROBE, env={"MPLBACKEND": "svg", "A": "1"}, memory_fs="/tmp")
    _, written, _, env = sandbox.call("probe", 20)
    assert written == 20 << 20  # the user's 64 MiB mount, not the private 16 MiB
    assert env == {
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "svg",
        "A": "1",
    }
    run = python("import os\nprint(sorted(os.environ))", env={"A": "1"}).run(env={"B": "2"})
    assert run.stdout.decode().strip() == "['B', 'MPLBACKEND', 'MPLCONFIGDIR', 'TMPDIR']"
    below = python(
        "import os\nprint(os.listdir('/tmp/out'))",
        None,
        (ws.Mount.directory(tmp_path, "/tmp/out"),),
    )
    assert below.run().stdout == b"[]\n"
    assert [m.guest_path for m in sandbox_core(below).plan.mounts if m.in_memory] == []


def test_javascript_guests_get_no_private_tmp() -> None:
    """The private /tmp (and the runtime's mounts) are the Python guests' only."""
    sandbox = ws.WasmSandbox.builder().source("function f() { return 1; }").language("javascript")
    assert sandbox_core(sandbox.build()).plan.mounts == ()


# --- matplotlib's data: extracted once, checked, atomic --------------------------------------


def _runtime_zip(tmp_path: Path, members: dict[str, bytes]) -> Path:
    """A stand-in for the runtime's stdlib zip whose mpl-data.zip holds ``members``."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    path = tmp_path / "python315.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("matplotlib/mpl-data.zip", inner.getvalue())
        z.writestr("os.py", b"")
    return path


MEMBERS = {
    "matplotlibrc": b"backend: Agg\n",
    "fonts/ttf/a.ttf": b"\0" * 100,
    "stylelib/x.mplstyle": b"#",
}


def test_matplotlib_data_is_extracted_once_and_remade_when_damaged(tmp_path: Path) -> None:
    """Extracted once (found again, not rewritten); a changed file, a planted file or a
    link put in place of a file is noticed and the directory made again."""
    source = _runtime_zip(tmp_path, MEMBERS)
    data = _pydata.matplotlib_data(source, "ab" * 32, tmp_path / "cache")
    assert data is not None and (data / "matplotlibrc").read_bytes() == b"backend: Agg\n"
    inode = os.stat(data / "matplotlibrc").st_ino
    assert _pydata.matplotlib_data(source, "ab" * 32, tmp_path / "cache") == data
    assert os.stat(data / "matplotlibrc").st_ino == inode  # found, not made again

    def link_instead() -> None:
        (data / "matplotlibrc").unlink()
        (data / "matplotlibrc").symlink_to("/etc/passwd")

    for damage in (
        lambda: (data / "fonts/ttf/a.ttf").write_bytes(b"short"),
        lambda: (data / "extra.py").write_text("planted"),
        link_instead,
    ):
        damage()
        assert _pydata.matplotlib_data(source, "ab" * 32, tmp_path / "cache") == data
        assert sorted(
            p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()
        ) == sorted(MEMBERS)
        assert not (data / "matplotlibrc").is_symlink()


def test_matplotlib_data_escaping_members_are_refused(tmp_path: Path) -> None:
    """A member that could leave the directory is refused and nothing is left in place; a
    zip without matplotlib's data gives none."""
    for name in ("../evil", "/abs", "a/../../b", "c:\\x"):
        source = _runtime_zip(tmp_path, {name: b"x"})
        with pytest.raises(ws.ConfigurationError, match="holds the member"):
            _pydata.matplotlib_data(source, "ef" * 32, tmp_path / "cache")
        assert not (tmp_path / "cache" / "python-mpl-data" / ("ef" * 12)).exists()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("os.py", b"")
    assert _pydata.matplotlib_data(plain, "01" * 32, tmp_path / "cache") is None


def test_concurrent_extractions_make_one_directory(tmp_path: Path) -> None:
    """Threads extracting at once (one lock file) leave one directory and its listing."""
    source = _runtime_zip(tmp_path, MEMBERS)
    found: list[Path | None] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(_pydata.matplotlib_data(source, "77" * 32, tmp_path / "c"))
        )
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and found[0] is not None
    assert sorted(os.listdir(tmp_path / "c" / "python-mpl-data")) == [
        "77" * 12,
        "77" * 12 + ".lock",
    ]
    assert json.loads((found[0].parent / "listing.json").read_text()).keys() == MEMBERS.keys()


# --- python_path: pure-Python packages from directories and wheels ---------------------------


def _wheel(folder: Path) -> Path:
    """A pure-Python wheel holding the package ``greet``."""
    path = folder / "greet-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("greet/__init__.py", "def hello(name):\n    return f'hello {name}'\n")
        z.writestr(
            "greet-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: greet\nVersion: 1.0\n"
        )
        z.writestr("greet-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
    return path


@pytest.fixture
def packages(tmp_path: Path) -> tuple[Path, Path]:
    """(a directory holding the module ``shapes``, a wheel holding the package ``greet``)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "shapes.py").write_text("def area(w, h):\n    return w * h\n")
    return lib, _wheel(tmp_path)


USES_PACKAGES = """
import sys
import greet, shapes

def both(n):
    return [greet.hello(n), shapes.area(n, 2), [p for p in sys.path if 'python-path' in p or p.endswith('.zip')]]

if __name__ == "__main__":
    print(*both(3)[:2])
"""


def test_python_path_works_for_run_call_and_sessions(packages: tuple[Path, Path]) -> None:
    """Both entries are on sys.path, in order, before the standard library zip."""
    lib, wheel = packages
    builder = ws.WasmSandbox.builder().source(USES_PACKAGES).language("python").max_fuel(None)
    sandbox = builder.python_path(lib).python_path(wheel).build()
    assert sandbox.run().stdout == b"hello 3 6\n"
    entries = [
        "/usr/local/python-path/0",
        "/usr/local/python-path/1/" + wheel.name,
        "/usr/local/lib/python315.zip",
    ]
    assert sandbox.call("both", 4) == ["hello 4", 8, entries]
    with sandbox.session() as session:
        assert session.call("both", 5)[:2] == ["hello 5", 10]
        session.exec("import shapes as s2")
        assert session.eval("s2.area(3, 3)") == 9


def test_python_path_in_a_preinitialised_state_keyed_by_content(
    packages: tuple[Path, Path], tmp_path: Path, _isolated_cache: Path
) -> None:
    """A setup may import from python_path; the state on disk is keyed by what the entries
    hold: a changed module makes a new state, and calls see the new code."""
    lib, wheel = packages
    cache = tmp_path / "cache"
    cache.mkdir()
    _link_prepared(_isolated_cache, cache)

    def build() -> ws.WasmSandbox:
        builder = ws.WasmSandbox.builder().source(
            "def f(n):\n    return [greet.hello(n), shapes.area(n, n)]\n"
        )
        builder.language("python").max_fuel(None).cache_dir(cache).python_path(lib, wheel)
        return builder.preinitialize("import greet, shapes").build()

    assert build().call("f", 2) == ["hello 2", 4]
    assert len(list((cache / "snapshots").glob("*.wsnap"))) == 1
    assert build().call("f", 2) == ["hello 2", 4]
    assert len(list((cache / "snapshots").glob("*.wsnap"))) == 1  # read back, not made again
    (lib / "shapes.py").write_text("def area(w, h):\n    return w * h * 100\n")
    assert build().call("f", 2) == ["hello 2", 400]
    assert len(list((cache / "snapshots").glob("*.wsnap"))) == 2


def test_python_path_entries_are_read_only(packages: tuple[Path, Path]) -> None:
    """The guest cannot write into a python_path directory."""
    lib, wheel = packages
    code = "try:\n    open('/usr/local/python-path/0/new.py', 'w')\nexcept OSError as e:\n    print(__import__('errno').errorcode[e.errno])\n"
    sandbox = (
        ws.WasmSandbox.builder().source(code).language("python").python_path(lib, wheel).build()
    )
    assert sandbox.run().stdout == b"EROFS\n"
    assert sorted(p.name for p in lib.iterdir()) == ["shapes.py"]


def test_python_path_refusals(tmp_path: Path, packages: tuple[Path, Path]) -> None:
    """Clear errors: a missing path, a file that is not a wheel, a guest in another language,
    a mount where the entries go, and a single path where a sequence is expected."""
    lib, _ = packages
    builder = ws.WasmSandbox.builder()
    with pytest.raises(ws.ConfigurationError, match=r"does not exist: .*nowhere"):
        builder.python_path(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ws.ConfigurationError, match="neither a directory nor a wheel"):
        builder.python_path(tmp_path / "notes.txt")
    for source, language in (("function f() {}", "javascript"), (b"(module)", None)):
        js = ws.WasmSandbox.builder().source(source).python_path(lib)
        if language:
            js.language(language)
        with pytest.raises(ws.ConfigurationError, match="python_path is for Python guests"):
            js.config()
    clash = ws.WasmSandbox.builder().source("x = 1").language("python").python_path(lib)
    with pytest.raises(ws.ConfigurationError, match="overlaps /usr/local/python-path"):
        clash.memory_fs("/usr/local/python-path/0").config()
    with pytest.raises(TypeError, match="sequence of paths"):
        ws.SandboxConfig(source="x = 1", language="python", python_path=str(lib))


@pytest.mark.timeout(240)
def test_readme_plots_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's plots example runs as written (in a directory holding its folders and wheel)
    and leaves the chart on the host."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("<!-- plots-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    for folder in ("charts", "vendor", "wheels"):
        (tmp_path / folder).mkdir()
    _wheel(tmp_path / "wheels")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert png_size((tmp_path / "charts" / "chart.png").read_bytes()) == (400, 300)
