"""The HTTP service (``emotionlab serve``): ``app`` assembles it from ``limits`` (what a request may cost),
``uploads`` (the body, the form and each image's header, checked before decoding), ``workers`` (the inference
slots, in this process or in worker processes), ``pages`` and ``api_docs`` (the page at / and /docs)."""
