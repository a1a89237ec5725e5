"""Class-conditional generative models for continual generation: a VAE and a GAN.

Both condition on a one-hot code over *all* classes of the stream, so one network generates
any class it has learned, and a new task only brings new condition codes. They speak the
same language as the classifiers to the continual-learning methods:

* ``shared_parameters()``: what methods score and protect. VAE: the decoder (``protect=
  'decoder'``, default; the encoder is not needed to generate) or decoder and encoder
  (``'all'``). GAN: the generator only, as in Seff et al. 2017; the discriminator is
  retrained freely on each task.
* ``importance_objective(x, y, t, signal)``: the scalar, summed over the batch, whose
  gradient the importance estimators (:mod:`anpyc.kernels.importance`) use. See
  :meth:`ConditionalVAE.importance_objective` and :meth:`ConditionalGAN.importance_objective`.
* ``loss(x, y)``: the training loss of the protected part (the loop adds the method's
  penalty to it and applies the method's step hooks around its optimizer);
  ``auxiliary_loss(x, y)``: the GAN's discriminator loss, trained without hooks.
* ``sample(y, generator)``: images in [0, 1] for the condition labels ``y``.

Example:
    >>> model = ConditionalVAE((1, 28, 28), n_classes=10, hidden=(64,), latent_dim=8)
    >>> model.sample(torch.tensor([3, 7])).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from anpyc.data.batches import SplitData

SIGNALS = ("entropy", "loss", "output_norm")


def _mlp(sizes: list[int], act: type[nn.Module], **act_kw) -> nn.Sequential:
    """Linear layers with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act(**act_kw))
    return nn.Sequential(*layers)


class GenerativeModel(nn.Module):
    """Common plumbing: one-hot conditioning, image shape, optimizer defaults."""

    #: Adam betas for this model family (the loop builds Adam with them).
    adam_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    #: learning rate used when the run keeps the classification default (SGD, lr 0.1).
    default_lr: ClassVar[float] = 1e-3
    kind: ClassVar[str] = "generative"

    def __init__(self, image_shape: tuple[int, ...], n_classes: int, latent_dim: int) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.n_pixels = int(math.prod(self.image_shape))
        self.n_classes = int(n_classes)
        self.latent_dim = int(latent_dim)

    def onehot(self, y: Tensor) -> Tensor:
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"condition labels must be in [0, {self.n_classes}), got {y.min()}..{y.max()}")
        return F.one_hot(y.long(), self.n_classes).float()

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z.to(device)

    # interface the training loop uses; the GAN overrides the auxiliary part
    def training_parameters(self) -> list[nn.Parameter]:
        """Parameters stepped by the main optimizer (with the method's hooks)."""
        raise NotImplementedError

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters of an adversary trained without method hooks (none by default)."""
        return []

    def auxiliary_loss(self, x: Tensor, y: Tensor) -> Tensor | None:
        return None

    # a conditional generator has no task heads: a task only brings new class codes
    head_mode: ClassVar[str] = "none"

    @property
    def head_sizes(self) -> list[int]:
        return []

    def ensure_heads(self, sizes: list[int]) -> None:
        """Nothing to rebuild when a checkpoint is restored (no heads)."""

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class ConditionalVAE(GenerativeModel):
    """MLP conditional VAE with a Bernoulli decoder (Kingma & Welling 2014; Sohn et al. 2015).

    Encoder ``[x, onehot(y)] -> hidden -> (mu, log sigma^2)``; decoder ``[z, onehot(y)] ->
    reversed(hidden) -> pixel logits``. The loss is the negative ELBO per image (summed over
    pixels, in nats), averaged over the batch.
    """

    kind = "vae"
    default_lr = 1e-3

    def __init__(
        self,
        image_shape: tuple[int, ...],
        n_classes: int,
        hidden: tuple[int, ...] = (256, 256),
        latent_dim: int = 32,
        protect: str = "decoder",
    ) -> None:
        super().__init__(image_shape, n_classes, latent_dim)
        if protect not in ("decoder", "all"):
            raise ValueError(f"protect must be 'decoder' or 'all', got {protect!r}")
        self.protect = protect
        hidden = list(hidden)
        self.encoder = _mlp([self.n_pixels + n_classes, *hidden, 2 * latent_dim], nn.ReLU)
        self.decoder = _mlp([latent_dim + n_classes, *reversed(hidden), self.n_pixels], nn.ReLU)

    def training_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:
        parts = [("decoder", self.decoder)] + ([("encoder", self.encoder)] if self.protect == "all" else [])
        return [(f"{prefix}.{n}", p) for prefix, mod in parts for n, p in mod.named_parameters()]

    def encode(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(torch.cat([x.flatten(1), self.onehot(y)], 1))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)  # keeps exp() finite early in training

    def decode_logits(self, z: Tensor, y: Tensor) -> Tensor:
        return self.decoder(torch.cat([z, self.onehot(y)], 1))

    def neg_elbo(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative ELBO of each image (nats), one reparameterised sample of z."""
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decode_logits(z, y)
        rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return rec + kl

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.neg_elbo(x, y).mean()

    def sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z = self.noise(len(y), generator)
        return torch.sigmoid(self.decode_logits(z, y.to(z.device))).reshape(len(y), *self.image_shape)

    def importance_objective(self, x: Tensor, y: Tensor, t: Tensor, signal: str = "entropy") -> Tensor:
        """Summed over the batch.

        * ``entropy`` (ANPyC's default signal) and ``loss``: the negative ELBO of the task's
          images. It is the VAE's own label-free objective (the class is an input, not a
          target), the closest analogue of a classifier's output entropy: a parameter matters
          if removing it changes how well the model explains its task's data.
        * ``output_norm``: squared L2 norm of the decoded pixel probabilities for prior samples
          ``z ~ N(0, I)`` under the batch's conditions (MAS-style, needs no images).
        """
        if signal in ("entropy", "loss"):
            return self.neg_elbo(x, y).sum()
        if signal == "output_norm":
            return self.sample(y).pow(2).sum()
        raise ValueError(f"unknown importance signal {signal!r}; known: {', '.join(SIGNALS)}")


class ConditionalGAN(GenerativeModel):
    """MLP conditional GAN (Mirza & Osindero 2014) with the non-saturating loss.

    Generator ``[z, onehot(y)] -> hidden -> tanh pixels``; discriminator ``[x, onehot(y)] ->
    reversed(hidden) -> logit``, LeakyReLU(0.2) throughout and no batch norm (running
    statistics are buffers no method protects, so they would let old classes drift).
    Both use Adam with betas (0.5, 0.999) (Radford et al. 2016).
    """

    kind = "gan"
    adam_betas = (0.5, 0.999)
    default_lr = 2e-4

    def __init__(
        self, image_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (256, 256), latent_dim: int = 32
    ) -> None:
        super().__init__(image_shape, n_classes, latent_dim)
        hidden = list(hidden)
        self.generator = _mlp([latent_dim + n_classes, *hidden, self.n_pixels], nn.LeakyReLU, negative_slope=0.2)
        self.discriminator = _mlp([self.n_pixels + n_classes, *reversed(hidden), 1], nn.LeakyReLU, negative_slope=0.2)

    def training_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"generator.{n}", p) for n, p in self.generator.named_parameters()]

    def generate(self, z: Tensor, y: Tensor) -> Tensor:
        """Images in [-1, 1], flat."""
        return torch.tanh(self.generator(torch.cat([z, self.onehot(y)], 1)))

    def critic(self, x_pm1: Tensor, y: Tensor) -> Tensor:
        """Discriminator logit for flat images in [-1, 1]."""
        return self.discriminator(torch.cat([x_pm1.flatten(1), self.onehot(y)], 1)).squeeze(1)

    def auxiliary_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Discriminator loss: real images of the batch vs generated ones with the same labels."""
        with torch.no_grad():
            fake = self.generate(self.noise(len(y)), y)
        real_logit = self.critic(x.flatten(1) * 2.0 - 1.0, y)
        fake_logit = self.critic(fake, y)
        return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()

    def generator_scores(self, y: Tensor) -> Tensor:
        """``-log D(G(z, y), y)`` per sample (the non-saturating generator loss)."""
        return F.softplus(-self.critic(self.generate(self.noise(len(y)), y), y))

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.generator_scores(y).mean()

    def sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z = self.noise(len(y), generator)
        return ((self.generate(z, y.to(z.device)) + 1.0) / 2.0).reshape(len(y), *self.image_shape)

    def importance_objective(self, x: Tensor, y: Tensor, t: Tensor, signal: str = "entropy") -> Tensor:
        """Summed over the batch; only the generator's gradient is used.

        * ``entropy`` (default) and ``loss``: the non-saturating generator loss
          ``-log D(G(z, y), y)`` under the current discriminator: a generator parameter matters
          if removing it makes its samples of the task's classes less convincing.
        * ``output_norm``: squared L2 norm of the generated images (MAS-style; needs no
          discriminator, which is itself retrained on later tasks).
        """
        if signal in ("entropy", "loss"):
            return self.generator_scores(y).sum()
        if signal == "output_norm":
            return self.generate(self.noise(len(y)), y).pow(2).sum()
        raise ValueError(f"unknown importance signal {signal!r}; known: {', '.join(SIGNALS)}")


def objective_fisher(model: GenerativeModel, data: SplitData,
                     max_samples: int | None = 1000, signal: str = "loss") -> dict[str, Tensor]:
    """Diagonal empirical Fisher of a generative model's shared parameters: the mean over
    examples of the squared *per-example* gradient of ``importance_objective`` (VAE: the
    negative ELBO, a bound on ``-log p(x | y)``; GAN: ``-log D(G(z, y), y)``), in eval mode.

    This is what EWC needs on generators (Seff et al. 2017 use the generator's Fisher); a
    classifier's Fisher in :mod:`anpyc.kernels.importance` works on head logits instead.

    Example:
        >>> fisher = objective_fisher(model, task.train, max_samples=500)  # doctest: +SKIP
    """
    from anpyc.data.taskdata import iterate
    from anpyc.utils import eval_mode

    params = model.shared_parameters()
    sums = {name: torch.zeros_like(p) for name, p in params}
    n = 0
    device = next(model.parameters()).device
    with eval_mode(model):
        for x, y, t in iterate(data, 1, limit=max_samples):
            obj = model.importance_objective(x.to(device), y.to(device), t.to(device), signal)
            grads = torch.autograd.grad(obj, [p for _, p in params], allow_unused=True)
            for (name, _), g in zip(params, grads):
                if g is not None:
                    sums[name] += g.pow(2)
            n += 1
    return {name: v / max(n, 1) for name, v in sums.items()}


GENERATIVE_MODELS = ("vae", "gan")


def is_generative(name: str) -> bool:
    """True for the model names the generative runner handles."""
    return name in GENERATIVE_MODELS


def build_generative(
    name: str,
    image_shape: tuple[int, ...],
    n_classes: int,
    hidden: tuple[int, ...] = (256, 256),
    latent_dim: int = 32,
    vae_protect: str = "decoder",
) -> GenerativeModel:
    """``vae`` or ``gan`` for images of ``image_shape``, conditioned on ``n_classes`` classes.

    Example:
        >>> build_generative("gan", (1, 28, 28), 10, hidden=(32,)).kind
        'gan'
    """
    if name == "vae":
        return ConditionalVAE(image_shape, n_classes, hidden, latent_dim, vae_protect)
    if name == "gan":
        return ConditionalGAN(image_shape, n_classes, hidden, latent_dim)
    raise ValueError(f"unknown generative model {name!r}; known: {', '.join(GENERATIVE_MODELS)}")
