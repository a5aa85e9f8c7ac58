"""``moscale train transformer`` in next-token order: teacher forcing on a single-scale tokenizer.

Loss: cross-entropy of every code given the earlier ones (:class:`~moscale_ros.models.next_token.NextTokenTransformer`),
with T2M-GPT's input corruption (a random share ``rho ~ U(0, corrupt_max)`` of the input tokens of a
``corrupt_prob`` share of the samples replaced by random codes; targets stay clean) and the same
condition dropout as next-scale training, plus the length estimator's loss. The checkpoint kind is
``next-token-generator``, so the next-scale :class:`~moscale_ros.generation.generator.MotionGenerator`
refuses such a file.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from moscale_common.errors import ConfigError
from moscale_ros.generation.bundle import NEXT_TOKEN_KIND
from moscale_ros.models.next_token import NextTokenTransformer, shifted_inputs
from moscale_ros.training import transformer
from moscale_ros.training.transformer import (
    MaskingConfig,
    Models,
    TrainingOrder,
    TransformerLossConfig,
    corrupt_codes,
)


def next_token_loss(
    models: Models, batch: dict, masking: MaskingConfig, cfg: TransformerLossConfig, device: torch.device, train: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced cross-entropy of a batch (training: corrupted inputs and condition dropout;
    validation: clean) plus the length estimator's loss; the parts carry the token accuracy ``acc_s1``."""
    tokenizer, model = models.tokenizer, models.transformer
    if tokenizer.num_scales != 1:
        raise ConfigError(
            f"next-token order needs a single-scale tokenizer (model.scales: [49]); this one has "
            f"{tokenizer.num_scales} scales {tokenizer.cfg.scales}"
        )
    feats_BTD, lengths_B = batch["feats_BTD"].to(device), batch["lengths_B"].to(device)
    with torch.no_grad():
        f_BNC, N_B = tokenizer.encode_latents(feats_BTD, lengths_B)
        quant = tokenizer.quantize(f_BNC, N_B)
        idx_BN, valid_BN = quant.idx[0], quant.masks[0]
        inputs_BN = idx_BN
        if train and masking.corrupt_max > 0 and masking.corrupt_prob > 0:
            inputs_BN = corrupt_codes(
                idx_BN, valid_BN, tokenizer.codebook_size, masking.corrupt_max, masking.corrupt_prob
            )
        prev_BN, prev_latents_BNC = shifted_inputs(tokenizer, inputs_BN, model.mask_id)
    text = models.text_encoder.encode(batch["texts"]).to(device)
    cond = model.condition(text, N_B, drop_B=None if train else torch.zeros_like(N_B, dtype=torch.bool))
    logits_BNV = model(cond, prev_BN, prev_latents_BNC.to(cond.cond_BW.dtype), N_B)
    ce = F.cross_entropy(
        logits_BNV[valid_BN].float(), idx_BN[valid_BN], label_smoothing=cfg.label_smoothing if train else 0.0
    )
    length_loss = models.length.loss(text.pooled_BD, N_B)
    loss = ce + cfg.length_weight * length_loss
    with torch.no_grad():
        hits = float(((logits_BNV.argmax(-1) == idx_BN) & valid_BN).sum()) / max(1, int(valid_BN.sum()))
    return loss, {"loss": loss.item(), "ce": ce.item(), "length_ce": length_loss.item(), "acc_s1": hits}


NEXT_TOKEN_ORDER = TrainingOrder(
    transformer_cls=NextTokenTransformer, loss_fn=next_token_loss, kind=NEXT_TOKEN_KIND, run_name="next_token"
)


def run(args: argparse.Namespace) -> int:
    """``moscale train transformer`` in next-token order (the transformer trainer with :data:`NEXT_TOKEN_ORDER`)."""
    return transformer.run(args, NEXT_TOKEN_ORDER)
