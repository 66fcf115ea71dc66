"""`uptal extract` and `uptal export` (see uptal.features.extract / .export for the exact conventions)."""
from __future__ import annotations

import sys
from pathlib import Path

# Built-in sampling defaults, used when neither the command line, a preset nor the checkpoint says otherwise.
DEFAULTS = {"fps": 25.0, "clip_frames": 8, "frame_stride": 1, "size": 112}
FORMATS = ("npy", "h5")


def add_subcommands(commands) -> None:
    _add_extract(commands)
    _add_export(commands)


def _add_extract(commands) -> None:
    parser = commands.add_parser(
        "extract", help="clip features of untrimmed videos (one [T, C] .npy per video + metadata)",
        description="Sliding clips of --clip-frames frames, --frame-stride apart, sampled at --fps, one clip every "
                    "--clip-stride sampled frames. A video of N sampled frames gets "
                    "T = 1 + max(0, ceil((N - span) / clip_stride)) features, span = (clip_frames - 1) * "
                    "frame_stride + 1; the last clip repeats the last frame where it runs past the end "
                    "(metadata: last_window_padded). Feature i is centred at (i * clip_stride + span / 2) / fps s. "
                    "Values: command line > --preset > the checkpoint's training settings > built-in defaults. "
                    "Reruns skip finished videos; under torchrun rank r takes videos r, r + W, ...")
    parser.add_argument("videos", nargs="+", help="video files, folders of videos, or .txt lists of paths")
    parser.add_argument("--out", required=True, help="output folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a `uptal pretrain` checkpoint (its backbone and normalisation)")
    source.add_argument("--weights", choices=["i3d-k400"], help="DeepMind's Kinetics-400 I3D (inputs in [-1, 1])")
    parser.add_argument("--backbone", help="backbone name (needed alone: random weights, for tests)")
    parser.add_argument("--preset", choices=["tsp"], help="tsp: 16 frames @ 15 fps, clip stride 16")
    parser.add_argument("--fps", type=float, help="target frame rate (default: checkpoint's, else 25)")
    parser.add_argument("--clip-frames", type=int, help="F frames per clip (default: checkpoint's, else 8)")
    parser.add_argument("--frame-stride", type=int, help="sampled frames between clip frames (default 1)")
    parser.add_argument("--clip-stride", type=int, help="sampled frames between clip starts (default: clip frames)")
    parser.add_argument("--size", type=int, help="centre crop size (default: checkpoint's, else 112)")
    parser.add_argument("--short-side", type=int, help="resize the short side to this before the crop "
                                                       "(default: size; e.g. 128 for 112 is the 8/7 ratio)")
    parser.add_argument("--batch", type=int, default=32, help="clips per forward pass (default 32)")
    parser.add_argument("--format", default="npy", help="npy, h5 or npy,h5 (h5: one features.h5 assembled "
                                                        "from the .npy files at the end; needs h5py)")
    parser.add_argument("--prefix", default="", help="prefix of the .npy names, e.g. v_ (ActivityNet)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available)")
    parser.add_argument("--chunk-frames", type=int, default=256, help="sampled frames decoded at a time")
    parser.add_argument("--decode-workers", type=int, help="threads decoding the next videos while the model "
                                                           "runs (default: the usable cores, at most 4; 0: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_extract)


def _add_export(commands) -> None:
    from .export import TARGETS
    parser = commands.add_parser("export", help="convert an `uptal extract` folder for a TAL toolbox")
    parser.add_argument("features_dir", help="a folder written by `uptal extract`")
    parser.add_argument("--to", required=True, choices=TARGETS, help="the consumer's layout")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--length", type=int, default=100, help="gtad / bmn: steps per video (100 or 128)")
    parser.add_argument("--annotations", help="ActivityNet JSON: list its videos without features in "
                                              "missing_files.txt")
    parser.set_defaults(func=_export)


def _pick(name: str, args, preset: dict, trained: dict):
    """Command line > preset > checkpoint > built-in default."""
    explicit = getattr(args, name)
    for value in (explicit, preset.get(name), trained.get(name), DEFAULTS.get(name)):
        if value is not None:
            return value
    return None


def _resolve_settings(args, encoder):
    from .extract import PRESETS, ClipSampling, Preprocessing
    preset = PRESETS[args.preset] if args.preset else {}
    trained = encoder.trained_with
    clip_frames = _pick("clip_frames", args, preset, trained)
    clip_stride = _pick("clip_stride", args, preset, {})
    clip_stride = clip_frames if clip_stride is None else clip_stride   # default: clips side by side
    sampling = ClipSampling(fps=float(_pick("fps", args, preset, trained)), clip_frames=clip_frames,
                            frame_stride=_pick("frame_stride", args, preset, {}), clip_stride=clip_stride)
    size = _pick("size", args, {}, trained)
    prep = Preprocessing(size=size, short_side=size if args.short_side is None else args.short_side,
                          mean=encoder.mean, std=encoder.std)
    return sampling, prep


def _parse_formats(text: str) -> set[str]:
    formats = {part.strip() for part in text.split(",") if part.strip()}
    if not formats or not formats <= set(FORMATS):
        raise ValueError(f"format must be npy, h5 or npy,h5, got {text!r}")
    return formats


def _default_device(device: str | None):
    import os
    import torch
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _extract(args) -> int:
    from .extract import extract_videos, find_videos, load_encoder, rank_from_environment, shard_for_rank
    try:
        formats = _parse_formats(args.format)
        if "h5" in formats:
            from .export import _require_h5py
            _require_h5py()
        encoder = load_encoder(args.checkpoint, args.weights, args.backbone)
        sampling, prep = _resolve_settings(args, encoder)
        rank, world_size = rank_from_environment()
        videos = shard_for_rank(find_videos(args.videos), rank, world_size)
        if args.decode_workers is not None and args.decode_workers < 0:
            raise ValueError(f"--decode-workers must be >= 0, got {args.decode_workers}")
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"uptal extract: error: {error}", file=sys.stderr)
        return 2
    result = extract_videos(videos, args.out, encoder, sampling, prep, prefix=args.prefix, batch_size=args.batch,
                            device=_default_device(args.device), chunk_frames=args.chunk_frames,
                            show_progress=not args.no_progress, decode_workers=args.decode_workers)
    print(("" if world_size == 1 else f"rank {rank}/{world_size}: ") + result.summary())
    if "h5" in formats:
        _assemble_h5(Path(args.out), world_size)
    return 1 if result.failed else 0


def _assemble_h5(out: Path, world_size: int) -> None:
    from .export import read_feature_set, write_tsp_h5
    if world_size > 1:   # other ranks may still be writing: assemble once they are all done
        print(f"h5: run `uptal export {out} --to tsp-h5 --out DIR` after every rank has finished")
        return
    try:
        print(f"h5: {write_tsp_h5(read_feature_set(out), out / 'features.h5')}")
    except ValueError as error:
        print(f"h5: not written: {error}", file=sys.stderr)


def _export(args) -> int:
    from .export import export_features
    try:
        out = export_features(args.features_dir, args.to, args.out, length=args.length,
                              annotations=args.annotations)
    except (ValueError, RuntimeError) as error:
        print(f"uptal export: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.to}: {out}")
    return 0
