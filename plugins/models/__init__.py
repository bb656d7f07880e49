"""Built-in learned models. Each lives in its own module (torch imported there) and is registered here
lazily by ``"module:attribute"`` so that listing plugins never imports torch.

`*-cos` variants use the cosine head s·cos(u, e_item) and declare ``provides={"cosine_head"}`` for the
losses that need one (ALA, LDAM); run `ce` with the same variant as the control (LOSSES.md §1.3).
"""
from __future__ import annotations

from harness.api import hookimpl

COSINE = {"cosine_head"}


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("linear-context", "plugins.models.linear_context:LinearContextRecommender",
                 "Bag of context words and context movies with a linear item head: the fast learned baseline.")
    registry.add("kbrd", "plugins.models.kbrd:KBRD",
                 "KBRD recommender: featureless R-GCN over the KG, self-attention over context entities.")
    registry.add("kbrd-cos", "plugins.models.kbrd:KBRDCosine",
                 "KBRD with a cosine item head (for ALA/LDAM).", provides=COSINE)
    registry.add("bert-rec", "plugins.models.bert_rec:BertRec",
                 "Text-only: sentence encoder (frozen MiniLM by default, cached) and a linear item head.")
    registry.add("bert-rec-cos", "plugins.models.bert_rec:BertRecCosine",
                 "bert-rec with a cosine item head (for ALA/LDAM).", provides=COSINE)
    registry.add("textcnn", "plugins.models.textcnn:TextCNN",
                 "Text-only: CNN (widths 2/3/4, 256 maps) over trainable word embeddings, linear item head.")
    registry.add("textcnn-cos", "plugins.models.textcnn:TextCNNCosine",
                 "TextCNN with a cosine item head (for ALA/LDAM).", provides=COSINE)
    registry.add("hybrid", "plugins.models.hybrid:Hybrid",
                 "Frozen sentence encoder + R-GCN entities, gated fusion, prior-initialised item head.")
    registry.add("hybrid-cos", "plugins.models.hybrid:HybridCosine",
                 "hybrid with a cosine item head (for ALA/LDAM).", provides=COSINE)
