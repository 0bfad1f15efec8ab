"""The hand-written generative function: functions-framework, ONNX Runtime GenAI loaded at import, and the
OpenAI completions chunks written as server-sent events, as a developer would write it by hand."""

import json
import os
import time
import uuid

import onnxruntime_genai as og

model = og.Model(os.environ["BENCH_MODEL"])
tokenizer = og.Tokenizer(model)


def handle(request):
    body = request.get_json()
    prompt = tokenizer.encode(body["prompt"])
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + int(body.get("max_tokens", 16)), do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": body["model"]}  # fmt: skip

    def events():
        stream = tokenizer.create_stream()
        while not generator.is_done():
            generator.generate_next_token()
            text = stream.decode(int(generator.get_next_tokens()[0]))
            choice = {"index": 0, "text": text, "finish_reason": None, "logprobs": None}
            yield "data: " + json.dumps({**head, "choices": [choice]}) + "\n\n"
        yield "data: [DONE]\n\n"

    return events(), 200, {"Content-Type": "text/event-stream"}
