"""Independent oracles shared by the test files: torch alone, no flatness_nb code on the path being checked."""
import torch, torch.nn.functional as F
from flatness_nb.core import exact_attention


def plain_hessian(model, pname, data):
    "Dense Hessian of the mean cross-entropy w.r.t. one parameter, with torch alone (the module's own forward, no library)."
    X, y = data; w = dict(model.named_parameters())[pname].detach()
    with exact_attention():
        H = torch.func.hessian(lambda v: F.cross_entropy(torch.func.functional_call(model, {pname: v}, (X,)), y))(w)
    return H.reshape(w.numel(), w.numel())
