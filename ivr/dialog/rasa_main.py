"""`python -m ivr.dialog.rasa_main …`: Rasa's own command line, loading trained models in seconds.

Rasa 3.6 builds each neural component (DIET, ResponseSelector, TED) on load
by running one *training* step on a stored example before it reads the
weights (`RasaModel.load`). Tracing that step (loss, gradients, optimizer)
into a TensorFlow graph took 70-80 % of `rasa run`'s start-up on 2 cores,
and the step is thrown away: the weights are overwritten right after.

Here the same variables are built by the prediction the loader runs anyway
(`run_inference` on the stored prediction example), the weights are
restored into them, and the prediction state derived from the weights
(label embeddings, the traced prediction graph) is rebuilt. Only the
optimizer's saved slots are left unread, which a server that never trains
does not need. tests/test_rasa_load.py checks that a model loaded this way
predicts exactly what Rasa's own loader predicts, on every held-out example.

Fine-tuning (`rasa train --finetune`) needs the optimizer and keeps Rasa's
loader; so does a component with no prediction example.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Replace `RasaModel.load` in this process (idempotent)."""
    import tensorflow as tf
    from rasa.utils.tensorflow.models import RasaModel

    if getattr(RasaModel.load, "_ivr_fast", False):
        return
    rasa_load = RasaModel.load.__func__

    def load(cls: Any, model_file_name: str, model_data_example: Any, predict_data_example: Any | None = None,
             finetune_mode: bool = False, *args: Any, **kwargs: Any) -> RasaModel:  # fmt: skip
        if finetune_mode or predict_data_example is None:
            return rasa_load(cls, model_file_name, model_data_example, predict_data_example, finetune_mode,
                             *args, **kwargs)  # fmt: skip
        model = cls(*args, **kwargs)
        config = kwargs.get("config", {})
        model.compile(optimizer=tf.keras.optimizers.Adam(config.get("learning_rate", 0.001)),
                      run_eagerly=config.get("run_eagerly"))  # fmt: skip
        model.run_inference(predict_data_example)  # creates every variable prediction reads
        model.load_weights(model_file_name).expect_partial()  # all but the optimizer's slots
        # What was derived from the random initial weights is derived again from the loaded ones.
        model.prepared_for_prediction = False
        model._tf_predict_step = None
        model.run_inference(predict_data_example)
        return model

    load._ivr_fast = True  # type: ignore[attr-defined]
    RasaModel.load = classmethod(load)


def main() -> None:
    install()
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
