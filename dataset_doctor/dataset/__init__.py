"""Reading a dataset: data.yaml (datayaml), label and image files (labels, images), the parallel file scan and its
cache (file_scan, index_cache), the index every command works on (index), folders without a data.yaml
(folder_dataset), prediction files (predictions) and the box rules shared by index, audit and fix (box_rules)."""
