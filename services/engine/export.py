"""Export a Hugging Face-format cross-encoder folder to ONNX (fp32, plus int8 and fp16 variants).

torch is needed here and only here: serving runs the exported graph with onnxruntime.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

from services.common.errors import ErrorKind, FeedrankError

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")
OPSET = 17


def export_cross_encoder(
    source: Path, out_dir: Path, *, max_length: int | None = None, trust_remote_code: bool = False,
    variants: tuple[str, ...] = ("int8", "fp16"),
) -> dict[str, Any]:
    """Write model.onnx (+ variants) and tokenizer files to out_dir; return manifest fields."""
    import torch
    from sentence_transformers import CrossEncoder

    source = Path(source)
    if not (source / "config.json").is_file():
        raise FeedrankError(ErrorKind.INVALID_ARGUMENT, f"{source} is not a Hugging Face model folder", "source")
    try:
        model = CrossEncoder(str(source), max_length=max_length, trust_remote_code=trust_remote_code, device="cpu")
    except Exception as err:  # transformers raises many types for unreadable folders
        raise FeedrankError(ErrorKind.INVALID_ARGUMENT, f"cannot load {source} as a cross-encoder: {err}", "source") from err
    if getattr(model, "num_labels", 1) != 1:
        raise FeedrankError(ErrorKind.INVALID_ARGUMENT, "only single-logit cross-encoders are supported", "source")
    out_dir.mkdir(parents=True, exist_ok=True)
    network = model[0].auto_model.eval()
    seq_len = 16
    dummy = {
        "input_ids": torch.ones((2, seq_len), dtype=torch.long),
        "attention_mask": torch.ones((2, seq_len), dtype=torch.long),
        "token_type_ids": torch.zeros((2, seq_len), dtype=torch.long),
    }
    # The tracer warns about shape-dependent Python branches in transformers' masking code; the
    # parity test (ONNX vs CrossEncoder.predict on real pairs of many lengths) is the real check.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(network),
            (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
            str(out_dir / "model.onnx"),
            input_names=list(dummy),
            output_names=["logits"],
            dynamic_axes={**{name: {0: "batch", 1: "seq"} for name in dummy}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model.tokenizer.save_pretrained(str(out_dir))
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (out_dir / name).is_file():
            shutil.copy2(source / name, out_dir / name)
    if "int8" in variants:
        quantize_int8(out_dir / "model.onnx", out_dir / "model.int8.onnx")
    if "fp16" in variants:
        convert_fp16(out_dir / "model.onnx", out_dir / "model.fp16.onnx")
    activation = "sigmoid" if type(model.activation_fn).__name__ == "Sigmoid" else "identity"
    return {
        "kind": "cross-encoder",
        "base_model": str(source),
        "max_length": int(model.max_length or 512),
        "activation": activation,
    }


class _LogitsOnly:
    """Wraps the HF module so the exported graph has one output: the logit column."""

    def __new__(cls, network):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.network = network

            def forward(self, input_ids, attention_mask, token_type_ids):
                out = self.network(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return out.logits[:, 0]

        return Wrapped()


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)


def convert_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # keep_io_types: callers feed int64 ids and read fp32 logits on either precision.
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
