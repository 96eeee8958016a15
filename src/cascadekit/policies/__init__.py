"""Learned routing policies (Bolukbasi et al. 2017): network selection and early exit learned
by weighted binary classification.

A threshold router looks at one number. A learned policy looks at many (the node's logit
scores and probabilities, a committee's agreement, hidden activations) and is trained to
minimise ``E[loss] + lam * E[cost]`` by reducing it, node by node from the last one backwards,
to weighted binary classification (Bolukbasi et al. 2017). Sweeping ``lam`` traces a trade-off
curve; a policy's per-input exit node plugs into the curve and summary functions of
:mod:`cascadekit.curves`. The policy graph is a chain (a cascade) or a small DAG (after the
first network: exit, go to the middle one, or jump to the largest).

**Direction.** A policy's exit score (:meth:`LearnedPolicy.exit_score`) follows the library's
rule: higher = exit here = keep on this stage.

The core imports numpy and scipy; scikit-learn (the classifiers) and torch (hidden features,
early-exit heads) are imported when used.

Examples
--------
>>> import numpy as np
>>> from cascadekit.policies import LearnedPolicy, PolicyGraph, logit_features, oracle_route
>>> rng = np.random.default_rng(0)
>>> student = rng.normal(size=(600, 3)) * 2
>>> y = rng.integers(0, 3, 600)
>>> correct = [student.argmax(1) == y, np.ones(600, bool)]   # a perfect teacher
>>> policy = LearnedPolicy(PolicyGraph.chain([1.0, 10.0]), lam=0.2).fit(
...     [logit_features(student)], correct)
>>> route = policy.route([logit_features(student)])
>>> route.exit_node.shape, 0.0 <= route.teacher_share <= 1.0
((600,), True)
"""

from __future__ import annotations

from ._classifiers import CLASSIFIERS, Decider, fit_decider
from ._core import (
    LearnedPolicy,
    PolicyRoute,
    default_lambdas,
    lambda_sweep,
    oracle_route,
    policy_curve,
    wbc_targets,
)
from ._graph import PolicyGraph
from ._io import (
    FeatureSpec,
    PolicyExitScore,
    PolicyRouter,
    load_policy_router,
    save_policy_router,
)
from .auto import AutoResult, auto_select
from .early_exit import ExitHeads, fit_exit_heads
from .features import (
    committee_feature_names,
    committee_features,
    hidden_features,
    logit_feature_names,
    logit_features,
    stack_features,
)

__all__ = [
    "CLASSIFIERS",
    "AutoResult",
    "Decider",
    "ExitHeads",
    "FeatureSpec",
    "LearnedPolicy",
    "PolicyExitScore",
    "PolicyGraph",
    "PolicyRoute",
    "PolicyRouter",
    "auto_select",
    "committee_feature_names",
    "committee_features",
    "default_lambdas",
    "fit_decider",
    "fit_exit_heads",
    "hidden_features",
    "lambda_sweep",
    "load_policy_router",
    "logit_feature_names",
    "logit_features",
    "oracle_route",
    "policy_curve",
    "save_policy_router",
    "stack_features",
    "wbc_targets",
]
