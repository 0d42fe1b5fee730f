"""Mutant: the server divides each coordinate by the number of clients that selected it, not by N."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation

DEFECT = "per-coordinate averaging over the selecting clients instead of N"


class PerCoordinateMean(ReferenceImplementation):
    name = "mutant:per_coordinate_mean"

    def aggregate(self, task, index_sets, uploads):
        out = []
        for l, (B, A) in enumerate(task.layers):
            sB, sA, count = np.zeros(B.shape), np.zeros(A.shape), np.zeros(task.rank)
            for sets, up in zip(index_sets, uploads):
                I = sets[l]
                sB[:, I] += up[l][0]
                sA[I, :] += up[l][1]
                count[I] += 1
            count = np.maximum(count, 1)
            out.append((np.asarray(B, float) + sB / count[None, :], np.asarray(A, float) + sA / count[:, None]))
        return out


impl = PerCoordinateMean()
