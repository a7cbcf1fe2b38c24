"""RoBERTa Workbench: attention, masked-token probing and training analyses for BERT-family encoders.

    import workbench as wb
    lm = wb.load("demo")                  # or "roberta-base", a local folder, a run folder
    wb.attention(lm, ["The cat sat."])    # tidy DataFrame; wb.plots / wb.widgets show it

Names are imported lazily (PEP 562) so `import workbench` stays fast and does not pull torch
until a model is needed. `__all__` is the public API; everything else is private.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # loading models, runs, devices and the errors every entry point raises
    "load": "workbench.models",
    "LM": "workbench.models",
    "TokenView": "workbench.tokens",
    "runs": "workbench.store",
    "resolve_device": "workbench.device",
    "WorkbenchError": "workbench.errors",
    "InputError": "workbench.errors",
    "ModelNotFoundError": "workbench.errors",
    "MissingHeadError": "workbench.errors",
    "DeviceError": "workbench.errors",
    "RunLockedError": "workbench.errors",
    "CheckpointCorruptError": "workbench.errors",
    "RunStoreError": "workbench.errors",
    # attention: weights, rollout/flow, query-key products
    "attention": "workbench.analysis.attention",
    "attention_tensor": "workbench.analysis.attention",
    "capture_attention": "workbench.analysis.attention",
    "attention_qk": "workbench.analysis.attention",
    "attention_rollout": "workbench.analysis.attention_modes",
    "attention_flow": "workbench.analysis.attention_modes",
    # masked-token probing: fill-mask, candidates, pseudo-log-likelihood, minimal pairs, logit lens
    "fill_mask": "workbench.analysis.fill_mask",
    "score_candidates": "workbench.analysis.candidates",
    "score": "workbench.analysis.pll",
    "compare_pairs": "workbench.analysis.probes",
    "probe": "workbench.analysis.probes",
    "load_probe_set": "workbench.analysis.probes",
    "logit_lens": "workbench.analysis.logit_lens",
    # pretraining: corpora (in memory or streamed from disk) and the loop
    "pretrain": "workbench.training.pretrain",
    "PretrainConfig": "workbench.training.pretrain",
    "Corpus": "workbench.training.corpus",
    "TextSource": "workbench.training.token_store",  # corpora larger than memory
    "StopFlag": "workbench.training.events",
    # fine-tuning: the loop, the run store, task data, metrics, predictions
    "finetune": "workbench.training.finetune",
    "FineTuneConfig": "workbench.training.finetune",
    "Run": "workbench.training.run",
    "load_task_data": "workbench.training.tables",
    "classification_metrics": "workbench.training.metrics",
    "regression_metrics": "workbench.training.metrics",
    "confusion_matrix": "workbench.training.metrics",
    "classify": "workbench.training.predict",
    "evaluate_classifier": "workbench.training.predict",
    "sentiment_demo": "workbench.training.demo_data",
    # heads: statistics, clusters, importance and ablation, syntax heads, roles, model diffs
    "head_stats": "workbench.analysis.heads",
    "head_clusters": "workbench.analysis.head_clusters",
    "ablate": "workbench.analysis.ablation",
    "head_importance": "workbench.analysis.ablation",
    "syntax_heads": "workbench.analysis.syntax_heads",
    "compare_attention": "workbench.analysis.compare",
    # beyond attention weights: context mixing, activation patching, pruning curves
    "context_mixing": "workbench.analysis.context_mixing",
    "patch": "workbench.analysis.patching",
    "prune_heads_curve": "workbench.analysis.pruning",
    "mixing_agreement": "workbench.analysis.mixing_agreement",
    # heads, continued: roles, model diffs, the query-key atlas
    "head_roles": "workbench.analysis.head_roles",
    "compare_models": "workbench.analysis.compare_models",
    "ModelDiff": "workbench.analysis.compare_models",
    "qk_atlas": "workbench.analysis.qk_atlas",
    # uncertainty: bootstrap intervals over texts, LaTeX tables
    "head_stat_intervals": "workbench.analysis.heads",
    "bootstrap_interval": "workbench.analysis.bootstrap",
    "export_table": "workbench.figures",
    # representations: features, probes, maps, CKA, attribution, tagged corpora
    "features": "workbench.analysis.features",
    "Features": "workbench.analysis.features",
    "linear_probe": "workbench.analysis.linear_probe",
    "embedding_map": "workbench.analysis.embedding_map",
    "similarity": "workbench.analysis.similarity",
    "linear_cka": "workbench.analysis.similarity",
    "attribute": "workbench.analysis.attribution",
    "pos_corpus": "workbench.analysis.pos_data",
    "read_conll": "workbench.analysis.pos_data",
    # syntax probes on Universal Dependencies: structural probe, edge probing, MDL
    "structural_probe": "workbench.analysis.structural_probe",
    "online_codelength": "workbench.analysis.mdl",
    "edge_probe": "workbench.analysis.edge_probe",
    "EdgeProbeResult": "workbench.analysis.edge_probe",
    # the paper report
    "make_report": "workbench.report",
}

# subpackages reachable as attributes: wb.widgets.AttentionExplorer, wb.figures.export, ...
_SUBMODULES = {"widgets", "figures", "plots", "views", "analysis", "training", "schema", "resources"}

__all__ = sorted(_API) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"workbench.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
