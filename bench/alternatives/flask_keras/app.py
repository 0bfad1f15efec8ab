"""The classic model API: Flask, the Keras model loaded at import, ``model.predict`` per request.

BENCH_MODEL=functions/digits-keras/model.keras gunicorn -b 127.0.0.1:8080 app:app
"""

import os

import keras
import numpy as np
from flask import Flask, jsonify, request

model = keras.saving.load_model(os.environ["BENCH_MODEL"], compile=False)
app = Flask(__name__)


@app.post("/predict")
def predict():
    instances = np.asarray(request.get_json()["instances"], dtype=np.float32)
    return jsonify({"predictions": model.predict(instances, verbose=0).tolist()})
