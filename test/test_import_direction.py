"""The dependency direction of ARCHITECTURE.md: core <- msgs <- nodes <- runtime <- cli; data, eval, train, viz use
core/msgs; bench may use anything below cli. `core` never imports rosbags or rclpy. Checked on the source (AST)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "perception3d"

# layer -> the perception3d subpackages/modules it may import
ALLOWED = {
    "core": {"core", "errors"},
    "msgs": {"core", "msgs", "errors"},
    "nodes": {"core", "msgs", "nodes", "errors"},
    "runtime": {"core", "msgs", "nodes", "runtime", "errors"},
    "data": {"core", "msgs", "data", "errors"},
    "eval": {"core", "msgs", "eval", "errors", "data"},
    "train": {"core", "msgs", "train", "errors", "data", "eval"},  # validation scores during training
    "viz": {"core", "msgs", "viz", "errors"},
    "bench": {"core", "msgs", "nodes", "runtime", "data", "eval", "viz", "bench", "errors", "pipeline"},
}
FORBIDDEN_THIRD_PARTY = {"core": {"rosbags", "rclpy", "message_filters", "tf2_ros", "cv_bridge"}}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(), str(path))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                module = ".".join(base + ((node.module,) if node.module else ()))
                if not node.module:  # "from .. import x" imports submodules x
                    names.update(f"{module}.{alias.name}" for alias in node.names)
                    continue
                names.add(module)
            else:
                names.add(node.module)
    return names


def _layer_files():
    for layer in ALLOWED:
        for path in sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else []:
            yield layer, path


@pytest.mark.parametrize(("layer", "path"), list(_layer_files()), ids=lambda v: str(v).split("perception3d/")[-1])
def test_no_upward_imports(layer, path):
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "perception3d" and len(parts) > 1:
            assert parts[1] in ALLOWED[layer], f"{path.name} ({layer}) imports {name}"
        assert parts[0] not in FORBIDDEN_THIRD_PARTY.get(layer, set()), f"{path.name} ({layer}) imports {name}"


def test_the_checker_sees_relative_imports():
    # Guard against a checker that silently passes: a known relative import must be resolved.
    assert "perception3d.msgs.factory" in _imports(PACKAGE / "msgs" / "pointcloud.py")
    assert "perception3d.core.camera" in _imports(PACKAGE / "msgs" / "camera_info.py")
