"""Text conditioning: frozen pretrained text encoders behind one interface (see `encoders`)."""

from vidgen.text.encoders import (
    CLIPTextEncoder,
    MiniLMTextEncoder,
    T5TextEncoder,
    TextEmbeddings,
    TextEncoder,
    load_text_encoder,
)

__all__ = [
    "CLIPTextEncoder",
    "MiniLMTextEncoder",
    "T5TextEncoder",
    "TextEmbeddings",
    "TextEncoder",
    "load_text_encoder",
]
