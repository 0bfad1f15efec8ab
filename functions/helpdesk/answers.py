"""What the helpdesk says for each intent, in the model's label order (the order of ``intents.yaml``).

Short enough to be spoken: Alexa reads these aloud.
"""

#: Below this probability the helpdesk says it is not sure instead of answering.
MIN_CONFIDENCE = 0.2

ANSWERS: dict[str, str] = {
    "greeting": "Hello! I answer questions about modelfn: deploying, protocols, the registry, security and more.",
    "goodbye": "Goodbye, and good luck with your models!",
    "thanks": "You're welcome. Anything else about modelfn?",
    "what_is_modelfn": (
        "modelfn turns a trained model and a small contract into a fast, secure serverless function, "
        "on Cloud Functions, Cloud Run, AWS Lambda or your own machine."
    ),
    "install": (
        "You need Python 3.11 or newer. Run make serve to build a virtual environment and serve the example, "
        "or pip install the package with the extras you need, such as gcs, s3 or convert."
    ),
    "serve_locally": (
        "Run modelfn serve with your function folder, for example modelfn serve functions/digits. "
        "It listens on port 8080 and serves every protocol."
    ),
    "deploy_gcp": (
        "modelfn render writes Terraform for Cloud Functions gen 2 or Cloud Run and a cloudbuild.yaml; "
        "Cloud Build runs the tests, builds the bundle and applies it."
    ),
    "deploy_aws": (
        "For AWS, modelfn render writes serverless.yml and a Terraform module: Lambda behind API Gateway, "
        "with a container image for TensorFlow models."
    ),
    "contract": (
        "The contract is modelfn.yaml in the function folder: the artifact and its sha256, the input and output "
        "tensors, hooks, documentation and dependencies. modelfn check validates it."
    ),
    "hooks": (
        "Hooks are plain Python functions in the function folder: pre turns the JSON body into tensors, "
        "post turns the outputs into the answer. Raise InvalidInput to refuse bad input."
    ),
    "frameworks": (
        "modelfn serves ONNX, TensorFlow and Keras, and scikit-learn models saved with skops. "
        "ONNX Runtime is the fast default; other models can be converted to ONNX."
    ),
    "convert": (
        "modelfn convert exports Keras and scikit-learn models to ONNX and checks the result against "
        "your validation data before it writes anything."
    ),
    "quantize": (
        "modelfn convert can quantize an ONNX model to int8 and reports the accuracy on your validation data "
        "beside the size saved."
    ),
    "protocol_oip": (
        "Every function speaks the Open Inference Protocol, KServe V2: post tensors to "
        "/v2/models/name/infer, with the binary extension too. Triton and KServe clients work unchanged."
    ),
    "protocol_tfserving": (
        "TF Serving's predict API is there too: post instances or inputs to /v1/models/name:predict."
    ),
    "batch": (
        "Batch prediction: a file that lands under incoming/ in the uploads bucket is scored, and its "
        "predictions are written to the results bucket or to a database."
    ),
    "registry": (
        "The registry keeps each model version with its digest in GCS, S3 or a folder. modelfn push adds a "
        "version; modelfn versions lists them."
    ),
    "aliases": (
        "An alias such as prod points at a version. modelfn promote moves it and modelfn rollback moves it back; "
        "running functions pick the change up within a minute, without downtime."
    ),
    "auth": (
        "Set MODELFN_API_KEYS_FILE for API keys, which can be scoped to models and revoked, or accept Google "
        "ID tokens. Every failed check gets the same 401."
    ),
    "limits": (
        "Bodies, tensors, JSON depth and strings are limited by settings and refused with a 413 or 400. "
        "An overloaded function answers 503 with Retry-After, and a request past its deadline gets 504."
    ),
    "cold_start": (
        "Start-up imports almost nothing; the first request loads the model once, verified by its digest. "
        "Set min instances to keep one warm."
    ),
    "batching": (
        "Add a batching block to the contract and concurrent requests run as one inference call, "
        "with a maximum batch size and wait."
    ),
    "messages": (
        "With the messages trigger, each request on a Pub/Sub topic or SQS queue is answered into the results "
        "bucket; failures go to a dead-letter queue."
    ),
    "webhooks": (
        "The function answers Alexa skills at /alexa, with Amazon's signature checks, and Dialogflow at "
        "/dialogflow. Open the function's home page to draw a digit or chat."
    ),
    "tests": (
        "Run make test: it builds everything and runs the whole suite against real servers and emulators, "
        "in about ten minutes."
    ),
    "bug_report": (
        "Sorry about that. Please open an issue on the project's repository with the request, the answer "
        "and the function's log line; error answers name the problem."
    ),
}
