"""What tests and benchmarks need and users do not: synthetic ViT-like rounding problems (:mod:`.synthetic`) and the
``faulty`` fault-injection solver (:mod:`.faulty`, registered when that module is imported — ``roundlab quantize
--plugin roundlab.testing.faulty --solver faulty ...`` from the command line). Neither is listed by ``roundlab
solvers`` unless imported.
"""
