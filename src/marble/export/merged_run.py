"""`marble lora merge`: a run folder with one LoRA adapter baked into its weights at a chosen scale.

The merged run generates what the base run with the adapter applied generates (up to float
round-off), at the base model's speed and with no peft at load time.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import UNet2DConditionModel

from marble.config import to_dict
from marble.export.run_folder import export_run_folder, finished_run
from marble.finetune.adapter import LoraAdapter
from marble.finetune.apply import apply_adapters
from marble.finetune.lora import merge_lora
from marble.layout import RunLayout
from marble.text.encoders import load_text_encoder
from marble.training.artifacts import write_json

MERGE_RECORD = "lora-merge.json"


def merge_adapter_into_run(base_run: Path, adapter: LoraAdapter, scale: float, out_dir: Path,
                           half: bool = False) -> Path:
    layout = RunLayout(finished_run(base_run))
    unet = UNet2DConditionModel.from_pretrained(layout.unet)
    encoder = load_text_encoder(layout.text_encoder) if "text_encoder" in adapter.weights else None
    apply_adapters(unet, encoder, [(adapter, scale)])
    merge_lora(unet)
    record = {"base": str(base_run), "adapter": str(adapter.path), "scale": scale, "lora": to_dict(adapter.record)}
    replaced = {"unet/model": unet.save_pretrained, MERGE_RECORD: lambda path: write_json(path, record)}
    if encoder is not None:
        merge_lora(encoder.text_model)
        replaced["text/encoder"] = encoder.save
    return export_run_folder(layout.root, out_dir, half, replaced)


__all__ = ["merge_adapter_into_run", "MERGE_RECORD"]
