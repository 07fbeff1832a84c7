"""Taking a trained detector out: ONNX export (onnx_export) and running an exported file (onnx_runtime).

Both need the optional `export` extra (`pip install dataset-doctor[export]`: onnx, onnxruntime); without it they
raise a one-line DoctorError saying so, and nothing else in the project imports them.
"""
