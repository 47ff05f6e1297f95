"""LightGBM text models evaluated with numpy (no lightgbm import at prediction time).

Public entry points: :class:`TreeEnsemble` (``TreeEnsemble.from_string(model_to_string())``) and
:func:`unique_rows` (repeated rows computed once).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct rows, inverse)`` of a 2-D array, rows compared by their bytes (rows holding NaN merge too);
    None when every row is distinct. Repeated measurements of one configuration are then computed once."""
    x = np.ascontiguousarray(x)
    if x.ndim != 2 or len(x) < 2:
        return None
    keys = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return None if len(first) == len(x) else (x[first], inverse.reshape(-1))


class TreeEnsemble:
    """A LightGBM ``model_to_string()`` regression model evaluated with numpy.

    Importing ``lightgbm`` pulls scikit-learn and SciPy (~2 s), which would break the "import + first
    prediction <= 2 s" goal, so inference walks the trees itself: numerical splits only (the models
    here have no categorical features), LightGBM's missing-value rules, raw score (identity link).
    ``tests/test_model_artifact.py`` checks it against ``lightgbm.Booster.predict`` to 1e-12.
    """

    RAW_OBJECTIVES = ("regression", "regression_l2", "l2", "huber", "fair", "regression_l1", "l1", "quantile")

    def __init__(self, feature_names: list[str], trees: list[dict[str, np.ndarray]]) -> None:
        self._names = feature_names
        n_trees = len(trees)
        width = max([len(t["threshold"]) for t in trees] + [1])
        leaves = max([len(t["leaf_value"]) for t in trees] + [1])
        self.feature = np.zeros((n_trees, width), np.int64)
        self.threshold = np.zeros((n_trees, width))
        self.decision = np.zeros((n_trees, width), np.int64)
        self.left = np.full((n_trees, width), -1, np.int64)
        self.right = np.full((n_trees, width), -1, np.int64)
        self.leaf_value = np.zeros((n_trees, leaves))
        self.root = np.zeros(n_trees, np.int64)
        for i, t in enumerate(trees):
            k = len(t["threshold"])
            self.root[i] = 0 if k else -1
            for name in ("feature", "threshold", "decision", "left", "right"):
                getattr(self, name)[i, :k] = t[name]
            self.leaf_value[i, : len(t["leaf_value"])] = t["leaf_value"]
        self.depth = max([t["depth"] for t in trees] + [0])

    def feature_name(self) -> list[str]:
        return list(self._names)

    @classmethod
    def from_string(cls, text: str) -> "TreeEnsemble":
        header, _, body = text.partition("\nTree=")
        head = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
        if head.get("num_class", "1") != "1" or head.get("num_tree_per_iteration", "1") != "1":
            raise ValueError("only single-output regression models are supported")
        if head.get("objective", "").split()[0] not in cls.RAW_OBJECTIVES:
            raise ValueError(f"objective {head.get('objective')!r} has a link function; not supported")
        names = head["feature_names"].split()
        body = body.split("\nend of trees", 1)[0]
        trees = []
        for block in ("Tree=" + body).split("\nTree=") if body else []:
            kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if int(kv.get("num_cat", "0")):
                raise ValueError("categorical splits are not supported")

            def arr(key: str, dtype: Any) -> np.ndarray:
                return np.array(kv.get(key, "").split(), dtype=dtype)

            t = {"feature": arr("split_feature", np.int64), "threshold": arr("threshold", float),
                 "decision": arr("decision_type", np.int64), "left": arr("left_child", np.int64),
                 "right": arr("right_child", np.int64), "leaf_value": arr("leaf_value", float)}
            t["depth"] = cls._depth(t["left"], t["right"])
            trees.append(t)
        if not trees:
            raise ValueError("no trees")
        return cls(names, trees)

    @staticmethod
    def _depth(left: np.ndarray, right: np.ndarray) -> int:
        if len(left) == 0:
            return 0
        best, stack = 0, [(0, 1)]
        while stack:
            node, d = stack.pop()
            best = max(best, d)
            stack += [(c, d + 1) for c in (left[node], right[node]) if c >= 0]
        return best

    CHUNK_CELLS = 1 << 21
    """Rows x trees walked at once (~16 MB per int64 work array): memory stays bounded for any row count."""

    def predict(self, x: np.ndarray, **_: Any) -> np.ndarray:
        """Raw scores for the rows of ``x`` (n_rows x n_features), summed over all trees. Repeated rows
        (the same configuration measured many times) are walked once; rows go in chunks of bounded size."""
        x = np.asarray(x, dtype=float)
        distinct = unique_rows(x) if len(x) > 256 else None
        if distinct is not None:
            return self.predict(distinct[0])[distinct[1]]
        step = max(1, self.CHUNK_CELLS // max(len(self.root), 1))
        if len(x) > step:
            return np.concatenate([self._walk(x[i:i + step]) for i in range(0, len(x), step)])
        return self._walk(x)

    def _walk(self, x: np.ndarray) -> np.ndarray:
        n, t = x.shape[0], len(self.root)
        node = np.broadcast_to(self.root, (n, t)).copy()
        cols = np.broadcast_to(np.arange(t), (n, t))
        rows = np.broadcast_to(np.arange(n)[:, None], (n, t))
        for _ in range(self.depth):
            inner = node >= 0
            if not inner.any():
                break
            nd = np.where(inner, node, 0)
            feat = self.feature[cols, nd]
            val = x[rows, feat]
            dec = self.decision[cols, nd]
            missing = (dec >> 2) & 3
            val = np.where(np.isnan(val) & (missing != 2), 0.0, val)
            use_default = ((missing == 1) & (np.abs(val) <= 1e-35)) | ((missing == 2) & np.isnan(val))
            go_left = np.where(use_default, (dec & 2) > 0, val <= self.threshold[cols, nd])
            nxt = np.where(go_left, self.left[cols, nd], self.right[cols, nd])
            node = np.where(inner, nxt, node)
        leaf = -node - 1
        return self.leaf_value[cols, leaf].sum(axis=1)
