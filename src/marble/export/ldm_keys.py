"""diffusers parameter names → the original Stable Diffusion (CompVis/ldm) checkpoint's names.

diffusers ships only the other direction (`diffusers.loaders.single_file_utils`); its tables of
whole keys are reused here, inverted. The block numbering of LDM's U-Net depends on the config
(levels, layers per block, which levels attend), so the block prefixes are generated from it;
names inside a block come from the tables below. The inverse of what diffusers' converters
`convert_ldm_unet_checkpoint` and `convert_ldm_vae_checkpoint` read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

from marble.errors import MarbleError

# Inside a ResnetBlock2D: diffusers name → LDM ResBlock name.
UNET_RESNET_NAMES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                     "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_RESNET_NAMES = {"conv_shortcut": "nin_shortcut"}
# Inside the VAE's mid-block attention: diffusers Attention → LDM AttnBlock (1×1 convolutions).
VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
VAE_CONV_ATTENTION = ("q.weight", "k.weight", "v.weight", "proj_out.weight")  # (C, C) → (C, C, 1, 1) in LDM


@dataclass(frozen=True)
class BlockRule:
    """Keys under diffusers prefix `old` move under LDM prefix `new`, renaming the block's own parts."""

    old: str
    new: str
    names: dict[str, str] = field(default_factory=dict)

    def rename(self, key: str) -> str:
        rest = key[len(self.old):]
        for ours, theirs in self.names.items():
            if rest.startswith(ours + "."):
                return self.new + theirs + rest[len(ours):]
        return self.new + rest


def unet_rules(levels: int, layers_per_block: int, up_attends: list[bool]) -> list[BlockRule]:
    """LDM numbers U-Net blocks consecutively: input_blocks 1.. (resnet [+ attention], then a
    downsampler per level), middle_block 0-2, output_blocks 0.. (one more resnet per level, the
    upsampler after the level's last one)."""
    per_level = layers_per_block + 1
    rules = [BlockRule("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET_NAMES),
             BlockRule("mid_block.attentions.0.", "middle_block.1."),
             BlockRule("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET_NAMES)]
    for level in range(levels):
        for layer in range(layers_per_block):
            block = f"input_blocks.{1 + level * per_level + layer}."
            rules += [BlockRule(f"down_blocks.{level}.resnets.{layer}.", block + "0.", UNET_RESNET_NAMES),
                      BlockRule(f"down_blocks.{level}.attentions.{layer}.", block + "1.")]
        for layer in range(per_level):
            block = f"output_blocks.{level * per_level + layer}."
            rules += [BlockRule(f"up_blocks.{level}.resnets.{layer}.", block + "0.", UNET_RESNET_NAMES),
                      BlockRule(f"up_blocks.{level}.attentions.{layer}.", block + "1.")]
        if level < levels - 1:
            rules.append(BlockRule(f"down_blocks.{level}.downsamplers.0.conv.",
                                   f"input_blocks.{(level + 1) * per_level}.0.op."))
            upsampler_slot = 2 if up_attends[level] else 1  # after the attention, when the level has one
            rules.append(BlockRule(f"up_blocks.{level}.upsamplers.0.",
                                   f"output_blocks.{level * per_level + layers_per_block}.{upsampler_slot}."))
    return rules


def vae_rules(levels: int) -> list[BlockRule]:
    """LDM's decoder counts its levels from the bottom (up.{levels-1} runs first)."""
    rules = []
    for part in ("encoder", "decoder"):
        rules += [BlockRule(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", VAE_RESNET_NAMES),
                  BlockRule(f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", VAE_RESNET_NAMES),
                  BlockRule(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTENTION_NAMES)]
    for level in range(levels):
        rules += [BlockRule(f"encoder.down_blocks.{level}.resnets.", f"encoder.down.{level}.block."),
                  BlockRule(f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample."),
                  BlockRule(f"decoder.up_blocks.{level}.resnets.", f"decoder.up.{levels - 1 - level}.block."),
                  BlockRule(f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{levels - 1 - level}.upsample.")]
    return rules


def rename_all(state: dict, whole_keys: dict[str, str], rules: list[BlockRule], what: str) -> dict:
    """Every key renamed by the whole-key table or its block's rule; a key neither knows is an error."""
    renamed, unknown = {}, []
    for key, value in state.items():
        rule = next((r for r in rules if key.startswith(r.old)), None)
        new = whole_keys.get(key) or (rule.rename(key) if rule else None)
        if new is None:
            unknown.append(key)
        else:
            renamed[new] = value
    if unknown:
        raise MarbleError(f"the {what} has parts the Stable Diffusion layout has no name for "
                          f"({', '.join(unknown[:3])}…); export it with --format diffusers")
    return renamed


def unet_to_ldm(state: dict, config) -> dict:
    """UNet2DConditionModel state dict → LDM UNetModel names (without the model.diffusion_model. prefix)."""
    if not isinstance(config["layers_per_block"], int):
        raise MarbleError(f"the Stable Diffusion layout numbers U-Net blocks with one layers_per_block for every "
                          f"level, not {config['layers_per_block']}; export it with --format diffusers")
    up_attends = [block.startswith("CrossAttn") for block in config["up_block_types"]]
    rules = unet_rules(len(config["block_out_channels"]), config["layers_per_block"], up_attends)
    return rename_all(state, DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], rules, "U-Net")


def vae_to_ldm(state: dict, config) -> dict:
    """AutoencoderKL state dict → LDM AutoencoderKL names (without the first_stage_model. prefix)."""
    renamed = rename_all(state, DIFFUSERS_TO_LDM_MAPPING["vae"], vae_rules(len(config["block_out_channels"])),
                         "autoencoder")
    # LDM's attention projections are 1×1 convolutions: (C, C) → (C, C, 1, 1).
    return {key: value[:, :, None, None] if ".mid.attn_1." in key and key.endswith(VAE_CONV_ATTENTION) else value
            for key, value in renamed.items()}
