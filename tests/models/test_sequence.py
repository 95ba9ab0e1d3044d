import torch

from models.configs import SequenceConfig
from models.sequence import SequenceCheckpoint, SequenceRecommender, left_pad


def test_forward_shapes_and_a_finite_loss_with_padding():
    model = SequenceRecommender(SequenceConfig(n_items=10, max_len=5, d_model=8, n_heads=2, n_layers=1))
    seq = left_pad([[1, 2, 3], [4]], 5)  # (2, 5)
    targets = left_pad([[2, 3, 4], [5]], 5)
    logits, loss = model(seq, targets)
    assert logits.shape == (4, 11)
    assert torch.isfinite(loss)
    scores, none = model(seq)
    assert scores.shape == (2, 11) and none is None
    assert torch.isfinite(model.encode(seq)).all()


def test_sampled_softmax_trains_too():
    model = SequenceRecommender(SequenceConfig(n_items=100, max_len=4, d_model=8, n_heads=2, n_layers=1, sampled=10))
    _, loss = model(left_pad([[1, 2, 3]], 4), left_pad([[2, 3, 4]], 4))
    loss.backward()
    assert torch.isfinite(loss) and model.items.weight.grad is not None


def test_the_model_learns_a_deterministic_sequence():
    torch.manual_seed(0)
    model = SequenceRecommender(SequenceConfig(n_items=6, max_len=4, d_model=16, n_heads=2, n_layers=1, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    chain = [1, 2, 3, 4, 5, 6]  # every window of 2 to 5 items along it
    windows = [chain[i:j] for i in range(6) for j in range(i + 2, min(i + 6, 7))]
    seq, targets = left_pad([w[:-1] for w in windows], 4), left_pad([w[1:] for w in windows], 4)
    for _ in range(200):
        _, loss = model(seq, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits, _ = model(left_pad([[1, 2], [3, 4, 5]], 4))
    assert (logits[:, 1:].argmax(dim=1) + 1).tolist() == [3, 6]


def test_checkpoint_round_trip(tmp_path):
    model = SequenceRecommender(SequenceConfig(n_items=3, max_len=4, d_model=8, n_heads=2, n_layers=1))
    loaded = SequenceCheckpoint.load(SequenceCheckpoint(model, ["a", "b", "c"], {"x": 1}).save(tmp_path / "m.pt"))
    seq = left_pad([[1, 2]], 4)
    assert loaded.vocab == ["a", "b", "c"] and loaded.meta == {"x": 1}
    assert torch.allclose(loaded.model.encode(seq), model.encode(seq))


def test_a_checkpoint_saved_under_the_old_config_names_loads():
    saved = SequenceCheckpoint(SequenceRecommender(SequenceConfig(n_items=3, max_len=4, d_model=8, n_layers=1)),
                               ["a", "b", "c"]).to_dict()
    config = saved["config"]
    saved["config"] = {"dim" if k == "d_model" else "heads" if k == "n_heads" else "layers" if k == "n_layers"
                       else k: v for k, v in config.items()}  # as written before the names changed
    assert SequenceCheckpoint.from_dict(saved).model.config == SequenceConfig(**config)
