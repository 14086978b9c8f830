"""corp_jax.data: the input side of CORP (the only package that imports TensorFlow).

Modules (import them directly; this package imports nothing heavy):
  records, shard_writer  the SequenceExample layout and crash-safe shard writing;
  sampling               Eq. 3 clip sampling (NumPy and TF twins), clip frame indices;
  augment_tf             per-clip crop / flip / colour / grayscale / blur in tf.data;
  augment_jax            the same flip / colour / grayscale / blur on the accelerator (no TF);
  pipeline               `make_train_dataset`, `make_linear_train_dataset` (NumPy batches);
  eval_pipeline          `make_eval_dataset` (N clips x C crops, every video once, padded).
`sampling` and `augment_jax` import without TensorFlow; the others import it lazily.
"""
