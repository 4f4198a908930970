"""The web app (`vidgen serve`): a gradio page for text-to-video and video tasks. Needs the `web` extra.

    from vidgen.web import Limits, build_app, launch
    launch(build_app(["cogvideox-shapes"], Limits()), port=7860)

`vidgen.web.limits` (server limits, upload validation) does not import gradio.
"""

from vidgen.web.limits import Limits, check_limits, validate_upload

__all__ = ["Limits", "build_app", "check_limits", "launch", "validate_upload"]


def __getattr__(name):
    # gradio takes seconds to import: only pay for it when the page is built.
    if name in ("build_app", "launch", "WebApp", "PipelineCache"):
        from vidgen.web import app

        return getattr(app, name)
    raise AttributeError(f"module 'vidgen.web' has no attribute {name!r}")
