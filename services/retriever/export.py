"""One-time export of the bi-encoder to ONNX. The only retriever module that imports torch.

The serving path loads the cached export (`embedder.Embedder`) and never reaches this file
once `$FEEDRANK_DATA_DIR/models/embedder/` holds a current export.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def export_encoder(source: Path, target: Path, fingerprint: str) -> None:
    """Write `model.onnx` (token embeddings, pooling happens in numpy) and the tokenizer into `target`."""
    import torch
    from transformers import AutoModel

    target.mkdir(parents=True, exist_ok=True)
    tmp = target / "model.onnx.tmp"
    class TokenEmbeddings(torch.nn.Module):
        # Keyword arguments: the positional order of BertModel.forward is not stable across versions.
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(source))

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    model = TokenEmbeddings().eval()
    sample = torch.ones((2, 8), dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about BERT's masking code do not apply: batch and length stay dynamic.
        warnings.simplefilter("ignore")
        # The TorchScript exporter gives a plain graph with dynamic batch and sequence axes.
        torch.onnx.export(
            model,
            (sample, sample, torch.zeros_like(sample)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "last_hidden_state": {0: "batch", 1: "seq"},
            },
            opset_version=17,
            dynamo=False,
        )
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    tmp.replace(target / "model.onnx")
    # Written last: its presence with a matching fingerprint marks a complete export.
    (target / "export.json").write_text(json.dumps({"source": str(source), "fingerprint": fingerprint}))
    log.info("exported embedder to %s", target)
