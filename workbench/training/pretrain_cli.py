"""`workbench pretrain`: command-line flags mapped one-to-one onto `PretrainConfig` fields.

    workbench pretrain                               # the demo corpus, the 'mini' preset
    workbench pretrain notes/ --preset small --masking static --static-copies 10
    workbench pretrain wiki.txt                      # one big file: documents split on blank lines
    workbench pretrain "shards/*.jsonl.gz" --encoding utf-8 --documents lines
    workbench pretrain --preset demo --minutes 60    # rebuild the embedded default model (CPU: slow)
    workbench pretrain --resume 20260101-120000-pretrain-ab12cd

Every PretrainConfig field is a flag (`--hidden-size 256`, `--whole-word`, ...); flags given on
the command line override the preset (or, with --resume, the run's config where a resume may
change them). No training logic lives here.
"""

from __future__ import annotations

import argparse

from .configs import PRESETS, PretrainConfig
from .flags import add_config_flags, add_run_flags, given_fields, print_run


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain a RoBERTa-style masked LM from scratch",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", default=None,
                   help="text file (documents separated by blank lines), folder or glob of "
                        ".txt/.txt.gz/.jsonl(.gz) files, packed-corpus folder, or 'demo' "
                        "(default: demo; with --resume: the run's own)")
    p.add_argument("--encoding", default=None,
                   help="text encoding of the corpus files (default: utf-8; others are refused)")
    p.add_argument("--documents", default=None, choices=("file", "blank-lines", "lines"),
                   help="what one document is: a whole .txt file, a block between blank lines, "
                        "or a line (default: blank-line blocks of a single file, whole files of "
                        "a folder, lines of a .jsonl)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model size and training settings to start from (default: mini)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training time budget in minutes (sets time_budget_s)")
    p.add_argument("--export", default=None, help="after training, save the model to this folder")
    add_run_flags(p)
    add_config_flags(p, PretrainConfig, skip=("preset",))
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    from ..models import load
    from .pretrain import pretrain

    overrides = given_fields(args)
    if args.minutes is not None:
        overrides["time_budget_s"] = args.minutes * 60
    if args.resume:  # the run's own config, with only the flags given here changed
        config = overrides or None
    else:
        config = PretrainConfig.from_preset(args.preset or "mini", **overrides)
    corpus = args.corpus if args.corpus or args.resume else "demo"
    if args.corpus and (args.encoding or args.documents):  # a streamed source read that way
        from .token_store import TextSource

        corpus = TextSource.from_files(args.corpus, encoding=args.encoding or "utf-8",
                                       documents=args.documents or "auto")
    run = pretrain(corpus, config=config, resume=args.resume, root=args.root, name=args.name,
                   progress=not args.no_progress, restart=args.restart)
    if run is None:  # a non-main process of a multi-GPU launch
        return 0
    print_run(run)
    if args.export:
        lm = load(run, device="cpu")
        lm.model.save_pretrained(args.export)
        lm.tokenizer.save_pretrained(args.export)
        print(f"exported to {args.export}")
    return 0
