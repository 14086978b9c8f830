"""corp_jax.data: the input side of CORP (the only package that imports TensorFlow).

Modules (import them directly; this package imports nothing heavy):
  records, shard_writer  the SequenceExample layout and crash-safe shard writing.
Input stages, in order, each knowing nothing of configs (docs/DESIGN_NOTES.md, "Input path"):
  read                   which videos this process reads; shard naming and metadata;
  parse                  a record or tf.data element -> frames source, num_frames, label;
  sampling               Eq. 3 clip starts (NumPy and TF, one definition), frame indices;
  decode                 JPEG decoding of the sampled frames (training: their crop window);
  crop                   random resized crop windows, resize, the evaluation crops;
  augment_tf             per-clip flip / colour / grayscale / blur in tf.data
                         (linear_aug_tf: the 'linear' colour mode; blur_tf: the blur);
  augment_jax            the same flip / colour / grayscale / blur on the accelerator (no TF);
  augment_params         AugmentConfig and uniforms -> parameters, shared by both (no TF).
Composition and glue:
  pipeline               `make_train_dataset`, `make_linear_train_dataset` (NumPy batches);
  eval_pipeline          `make_eval_dataset` (N clips x C crops, every video once, padded);
  from_config            config.data -> stage arguments (AugmentConfig, cache directories);
  tf_runtime             TF off the accelerators, no autograph, thread pools.
`sampling`, `augment_params`, `augment_jax` and `from_config` import without TensorFlow; the
others import it lazily.
"""
