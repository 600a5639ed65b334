"""tfds input pipelines. Raw official files come from a data directory when one is set."""
from zoo.data.common import raw_data_dir, prepare_builder
from zoo.data.images import load_images, image_pipeline, dataset_checksums

__all__ = ["raw_data_dir", "prepare_builder", "load_images", "image_pipeline", "dataset_checksums"]
