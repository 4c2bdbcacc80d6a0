"""Importers of published checkpoints into leanbert: `convert_checkpoint(source_format, src, out)`."""

from leanbert.convert.bert import convert_bert
from leanbert.convert.mega import convert_mega
from leanbert.convert.sparsebert import convert_sparsebert
from leanbert.convert.ultrafastbert import convert_ultrafastbert

CONVERTERS = {"bert": convert_bert, "mega": convert_mega, "sparsebert": convert_sparsebert,
              "ultrafastbert": convert_ultrafastbert}


def convert_checkpoint(source_format: str, src: str, out: str):
    if source_format not in CONVERTERS:
        raise ValueError(f"unknown source format {source_format!r}; allowed: {sorted(CONVERTERS)}")
    return CONVERTERS[source_format](src, out)
