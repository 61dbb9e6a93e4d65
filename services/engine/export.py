"""Export a Hugging Face-format cross-encoder folder to ONNX (fp32, plus int8 and fp16 variants).

torch is needed here and only here: serving runs the exported graph with onnxruntime.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from services.common.errors import ErrorKind, FeedrankError
from services.engine.optimize import optimized_graph

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")
OPSET = 17


def export_cross_encoder(
    source: Path, out_dir: Path, *, max_length: int | None = None, trust_remote_code: bool = False,
    variants: tuple[str, ...] = ("int8", "fp16"),
) -> dict[str, Any]:
    """Write model.onnx (+ variants) and tokenizer files to out_dir; return manifest fields."""
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
    network = _eager_attention(model[0].auto_model)
    export_graph(_Forward(network.eval(), "logits"), out_dir / "model.onnx", "logits", per_token=False)
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


def export_token_encoder(source: Path, path: Path) -> None:
    """Export a bi-encoder's transformer (token embeddings out; pooling happens in numpy)."""
    from transformers import AutoModel

    network = _eager_attention(AutoModel.from_pretrained(str(source)))
    export_graph(_Forward(network.eval(), "last_hidden_state"), path, "last_hidden_state", per_token=True)


def _eager_attention(network):
    """Trace the eager attention: its MatMul/Softmax pattern is what onnxruntime fuses into one Attention
    op (the SDPA trace is not fused and measured 1.6x slower on a 2-core AVX2 CPU); scores are equal."""
    if hasattr(network, "set_attn_implementation"):
        network.set_attn_implementation("eager")
    else:
        network.config._attn_implementation = "eager"
    return network


def export_graph(module, path: Path, output_name: str, *, per_token: bool) -> None:
    """TorchScript-export a (input_ids, attention_mask, token_type_ids) module with dynamic batch and length."""
    import torch

    sample = torch.ones((2, 16), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    output_axes = {0: "batch", 1: "seq"} if per_token else {0: "batch"}
    tmp = path.with_name(path.name + ".tmp")
    # The tracer warns about shape-dependent Python branches in transformers' masking code; the
    # parity tests (ONNX vs sentence-transformers on real texts of many lengths) are the real check.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (sample, sample, torch.zeros_like(sample)), str(tmp),
            input_names=names, output_names=[output_name],
            dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, output_name: output_axes},
            opset_version=OPSET, dynamo=False,
        )
    tmp.replace(path)


class _Forward:
    """Wraps an HF module so the exported graph has one output: the logit column or the token embeddings."""

    def __new__(cls, network, output: str):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.network = network

            # Keyword arguments: the positional order of BertModel.forward is not stable across versions.
            def forward(self, input_ids, attention_mask, token_type_ids):
                out = self.network(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return out.logits[:, 0] if output == "logits" else out.last_hidden_state

        return Wrapped()


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 of the fused graph: fused attention becomes one quantized op (QAttention), which
    measured 1.8x the pairs/s of quantizing the unfused graph."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="feedrank-int8-") as tmp:
        fused, _ = optimized_graph(src, Path(tmp), use_gpu=False)
        # Fused ops are outside the standard domain, so shape inference cannot type their outputs.
        quantize_dynamic(str(fused), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def convert_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # keep_io_types: callers feed int64 ids and read fp32 logits on either precision.
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def export_bi_encoder(
    query_source: Path, doc_source: Path, out_dir: Path, *, query_max_length: int, doc_max_length: int,
    variants: tuple[str, ...] = ("int8",),
) -> dict[str, Any]:
    """Write query.onnx (and doc.onnx when the towers differ) + tokenizer files; return manifest fields.

    A version whose query tower was tuned against frozen document vectors keeps the base model as its
    document tower, so the documents it scores embed exactly as the dense leg indexed them.
    """
    for source in (query_source, doc_source):
        if not (Path(source) / "config.json").is_file():
            raise FeedrankError(ErrorKind.INVALID_ARGUMENT, f"{source} is not a Hugging Face model folder", "source")
    out_dir.mkdir(parents=True, exist_ok=True)
    towers = {"query": Path(query_source)}
    if Path(doc_source).resolve() != Path(query_source).resolve():
        towers["doc"] = Path(doc_source)
    # config.json first: the fusion that int8 is quantized from reads the attention heads from it.
    for name in TOKENIZER_FILES:
        if (Path(query_source) / name).is_file():
            shutil.copy2(Path(query_source) / name, out_dir / name)
    for stem, source in towers.items():
        export_token_encoder(source, out_dir / f"{stem}.onnx")
        if "int8" in variants:
            quantize_int8(out_dir / f"{stem}.onnx", out_dir / f"{stem}.int8.onnx")
        if "fp16" in variants:
            convert_fp16(out_dir / f"{stem}.onnx", out_dir / f"{stem}.fp16.onnx")
    return {
        "kind": "bi-encoder",
        "base_model": str(doc_source),
        "max_length": doc_max_length,
        "activation": "identity",
        "query_max_length": query_max_length,
        "extra": {"shared_towers": "doc" not in towers},
    }
