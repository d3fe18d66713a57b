"""Diehl & Cook 2015: label assignment and votes on constructed responses, the fused
update of one presentation by hand, retries, frozen evaluation, checkpoints, and a small
end-to-end run on the bundled digits."""

import math

import pytest
import torch

from plastorch.bounds import Hard, Normalize
from plastorch.data import LabeledImages, load_digits
from plastorch.models.diehl_cook import (
    DiehlCook2015,
    DiehlCookTrainer,
    OnlineAccuracy,
    assign_labels,
    collect_responses,
    load_checkpoint,
    save_checkpoint,
    vote_all_activity,
    vote_proportion_weighting,
)
from plastorch.rules import STDP


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The per-step tensors are tiny; one thread avoids OpenMP barriers on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- labels and votes on a constructed response matrix ------------------------------------
# 6 samples (classes 0, 0, 1, 1, 2, 2) x 5 neurons.
RESPONSES = torch.tensor(
    [
        [6.0, 0.0, 1.0, 0.0, 0.0],
        [4.0, 0.0, 3.0, 0.0, 0.0],
        [0.0, 5.0, 2.0, 0.0, 0.0],
        [1.0, 3.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 2.0, 0.0, 2.0],
        [0.0, 1.0, 2.0, 0.0, 4.0],
    ]
)
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_assign_labels_per_class_mean_response():
    assignment = assign_labels(RESPONSES, LABELS, n_classes=4)
    # per-class means: neuron 0: (5, 0.5, 0), neuron 1: (0, 4, 0.5), neuron 2: (2, 2, 2),
    # neuron 3: silent, neuron 4: (0, 0, 3); class 3 has no samples -> 0.
    expected_rates = torch.tensor(
        [
            [5.0, 0.5, 0.0, 0.0],
            [0.0, 4.0, 0.5, 0.0],
            [2.0, 2.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
        ]
    )
    torch.testing.assert_close(assignment.rates, expected_rates)
    # neuron 2 ties between all classes -> lowest (0); neuron 3 never fired -> -1
    assert assignment.labels.tolist() == [0, 1, 0, -1, 2]
    torch.testing.assert_close(assignment.proportions[0], torch.tensor([10 / 11, 1 / 11, 0, 0]))
    torch.testing.assert_close(assignment.proportions[2], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0]))
    assert assignment.proportions[3].tolist() == [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(assignment.proportions.sum(1), torch.tensor([1.0, 1, 1, 0, 1]))


def test_votes_by_hand():
    assignment = assign_labels(RESPONSES, LABELS, n_classes=4)
    samples = torch.tensor(
        [
            [1.0, 0.0, 0.0, 9.0, 0.0],  # only the silent neuron 3 fires strongly: ignored
            [0.0, 2.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],  # no spikes: every class scores 0 -> class 0
        ]
    )
    # all-activity: class 0 = mean(n0, n2), class 1 = n1, class 2 = n4, class 3 = 0 (empty)
    #   sample 0: (0.5, 0, 0) -> 0;  sample 1: (1.5, 2, 0) -> 1
    assert vote_all_activity(samples, assignment).tolist() == [0, 1, 0]
    # proportion weighting: class 0 = (r0 10/11 + r2 / 3) / 2, class 1 = r1 * 8/9, class 2 = r4
    #   sample 1: (0.5, 1.778, 0) -> 1
    assert vote_proportion_weighting(samples, assignment).tolist() == [0, 1, 0]


def test_votes_differ_when_an_unselective_neuron_is_loud():
    # neuron 0: class 0 but answers class 1 nearly as much; neuron 1: selective for class 1
    responses = torch.tensor([[4.0, 0.0], [3.0, 2.0]])
    assignment = assign_labels(responses, torch.tensor([0, 1]), n_classes=2)
    sample = torch.tensor([[3.0, 2.5]])
    assert vote_all_activity(sample, assignment).tolist() == [0]  # 3 > 2.5
    # proportion weighting: class 0 = 3 * 4/7 = 1.714, class 1 = 2.5 * 1 -> 1
    assert vote_proportion_weighting(sample, assignment).tolist() == [1]


def test_assignment_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\[0, 2\), got values from 0 to 2"):
        assign_labels(RESPONSES, LABELS, n_classes=2)
    with pytest.raises(ValueError, match=r"\(5,\).*\(6, 5\)"):
        assign_labels(RESPONSES, LABELS[:5], n_classes=3)
    assignment = assign_labels(RESPONSES, LABELS, n_classes=3)
    with pytest.raises(ValueError, match="4 neurons but the assignment has 5"):
        vote_all_activity(torch.zeros(2, 4), assignment)


def test_online_accuracy_scores_with_the_previous_intervals_labels():
    tracker = OnlineAccuracy(interval=2, n_classes=2)
    tracker.update(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([0, 1]))
    assert tracker.accuracy is None  # nothing to vote with yet
    assert tracker.assignment.labels.tolist() == [0, 1]
    tracker.update(torch.tensor([[0.0, 3.0]]), torch.tensor([1]))  # right
    tracker.update(torch.tensor([[4.0, 1.0]]), torch.tensor([1]))  # wrong
    assert tracker.accuracy == 0.5 and tracker.history == [[4, 0.5]]
    # the second interval re-assigned: neuron 0 answered class 1 only -> class 1
    assert tracker.assignment.labels.tolist() == [1, 1]


# -- one presentation by hand ---------------------------------------------------------------
def tiny_model(**kwargs):
    params = dict(
        n_input=2,
        n_neurons=1,
        time_steps=3,
        max_rate=1000.0,  # spike probability = intensity: 0/1 images give fixed trains
        weight_sum=20.0,
        wmax=20.0,
        min_spikes=1,
        max_retries=0,
    )
    params.update(kwargs)
    return DiehlCook2015(**params)


def test_one_presentation_is_one_fused_stdp_update_then_normalisation():
    # Input 0 fires at steps 0, 1, 2; input 1 never. Weights [14, 6]: at step 0
    # v = -65 + 14 = -51 >= -52, the neuron fires and is refractory for steps 1 and 2.
    # Nearest-trace STDP with d = exp(-1/20):
    #   LTP: post at 0 pairs with the pre trace including step 0: +1e-2 * 1
    #   LTD: pre at 1 and 2 pair with the post trace before them: -1e-4 (d + d^2)
    # so w0 = 14 + 0.01 - 1.8560668e-4 = 14.0098144, then both weights * 20 / 20.0098144.
    model = tiny_model()
    with torch.no_grad():
        model.input_layer.weight.copy_(torch.tensor([[14.0, 6.0]]))
    counts = model(torch.tensor([[1.0, 0.0]]))
    assert counts.tolist() == [[1.0]]
    weight = model.input_layer.weight.double()
    torch.testing.assert_close(
        weight, torch.tensor([[14.002942873868642, 5.997057126131357]], dtype=torch.float64)
    )
    # theta: +0.05 at step 0, then decays for steps 1 and 2 with tau_theta = 1e7 ms
    assert model.thresholds.tolist() == pytest.approx([0.05 * math.exp(-2e-7)], abs=1e-15)


def test_presentation_equals_the_rule_applied_to_the_recorded_window():
    torch.manual_seed(0)
    model = DiehlCook2015(64, 12, time_steps=60, weight_sum=30.0, max_rate=127.5, min_spikes=0)
    recorded = {}
    model.input_layer.register_forward_hook(lambda m, a, o: recorded.update(pre=a[0]))
    model.excitatory.register_forward_hook(lambda m, a, o: recorded.update(post=o))
    before = model.input_layer.weight.clone()
    model(load_digits("train", n_train=3).images)
    rule = STDP(1e-2, -1e-4, trace_mode="nearest")
    pre, post = recorded["pre"], recorded["post"]
    assert post.sum() > 0
    update, _ = rule(
        model.input_layer, pre, post, rule.initial_state(model.input_layer, pre[0], post[0])
    )
    expected = Normalize(30.0)(before + Hard(0.0, 1.0)(before, update))
    torch.testing.assert_close(model.input_layer.weight, expected, rtol=1e-6, atol=1e-7)


def test_silent_samples_are_retried_with_more_input_and_still_learn():
    model = tiny_model(n_input=4, n_neurons=2, max_retries=3, intensity_step=0.25, max_rate=500.0)
    images = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    counts, scale = model.present(images)
    assert scale.tolist() == [1.75, 1.0]  # zeros: 3 retries of +0.25; ones: no retry needed
    assert counts[0].sum() == 0 and counts[1].sum() >= 1


def test_evaluation_freezes_weights_and_thresholds_and_batches_exactly():
    model = DiehlCook2015(16, 6, time_steps=40, weight_sum=8.0, max_rate=1000.0, max_retries=0)
    images = (torch.rand(5, 16) < 0.5).float()  # p = 1 or 0: deterministic spike trains
    model(images)  # train once so thresholds differ
    weight, theta = model.input_layer.weight.clone(), model.thresholds.clone()
    model.eval()
    together = model(images)
    alone = torch.cat([model(images[i : i + 1]) for i in range(5)])
    assert torch.equal(together, alone)
    assert torch.equal(model.input_layer.weight, weight)
    assert torch.equal(model.thresholds, theta)
    model.train()
    model(images)
    assert not torch.equal(model.input_layer.weight, weight)
    assert (model.thresholds > theta).any()


def test_weights_stay_normalised_and_bounded_during_training():
    model = DiehlCook2015(64, 10, time_steps=50, weight_sum=30.0, max_rate=127.5)
    model(load_digits("train", n_train=20).images)
    weight = model.input_layer.weight
    torch.testing.assert_close(weight.sum(1), torch.full((10,), 30.0))
    assert weight.min() >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neurons": 0}, "n_neurons"),
        ({"weight_sum": 100.0}, "weight_sum"),
        ({"weight_dependence": "cubic"}, "weight_dependence"),
        ({"max_rate": 500.0, "max_retries": 5}, "probability"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiehlCook2015(64, **{"weight_sum": 30.0, **kwargs})


def test_images_of_the_wrong_size_raise_with_the_shape():
    with pytest.raises(ValueError, match=r"64 values per sample, got \(2, 7, 7\)"):
        DiehlCook2015(64, 4, weight_sum=30.0)(torch.zeros(2, 7, 7))


# -- training runs ----------------------------------------------------------------------------
SMALL = dict(time_steps=30, weight_sum=30.0, max_rate=127.5)


def small_data(n_train=40, n_test=30):
    test = load_digits("test", n_train=n_train)
    return load_digits("train", n_train=n_train), LabeledImages(
        test.images[:n_test], test.labels[:n_test]
    )


def small_trainer(path=None, epochs=2, **kwargs):
    train, test = small_data()
    model = DiehlCook2015(64, 8, **SMALL)
    return DiehlCookTrainer(
        model, train, test, epochs=epochs, batch_size=4, checkpoint_path=path,
        checkpoint_every=8, interval=12, **kwargs,
    )  # fmt: skip


def final_state(trainer):
    model = trainer.model
    return model.input_layer.weight.clone(), model.thresholds.clone()


def test_resume_from_an_epoch_checkpoint_is_bit_identical(tmp_path):
    reference = small_trainer()
    reference_metrics = reference.run()
    first = small_trainer(tmp_path / "run.pt", epochs=1)
    first.run()
    train, test = small_data()
    resumed = DiehlCookTrainer.from_checkpoint(
        load_checkpoint(tmp_path / "run.pt"), train, test, epochs=2,
        checkpoint_path=tmp_path / "run.pt",
    )  # fmt: skip
    metrics = resumed.run()
    for a, b in zip(final_state(resumed), final_state(reference)):
        assert torch.equal(a, b)
    for key in ("accuracy_all_activity", "accuracy_proportion_weighting", "online_accuracy"):
        assert [r[key] for r in metrics["epochs"]] == [r[key] for r in reference_metrics["epochs"]]
    assert metrics["online_accuracy"] == reference_metrics["online_accuracy"]


def test_interrupt_mid_batch_saves_a_consistent_checkpoint_and_resumes_identically(tmp_path):
    reference = small_trainer()
    reference.run()
    interrupted = small_trainer(tmp_path / "run.pt")
    step = interrupted.model.learner.step
    calls = []

    def step_then_interrupt(*args, **kwargs):  # Ctrl-C right after the 7th weight update
        delta = step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return delta

    interrupted.model.learner.step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    checkpoint = load_checkpoint(tmp_path / "run.pt")
    # the position is the start of the batch that was cut short (the 7th update may be a
    # retry of a silent sample, so which batch that is depends on the run)
    position = checkpoint["position"]
    assert position["epoch"] == 0 and position["index"] % 4 == 0 and position["index"] < 40
    assert not torch.equal(
        checkpoint["model"]["input_layer.weight"], interrupted.model.input_layer.weight
    )
    train, test = small_data()
    resumed = DiehlCookTrainer.from_checkpoint(checkpoint, train, test)
    resumed.run()
    for a, b in zip(final_state(resumed), final_state(reference)):
        assert torch.equal(a, b)


def test_checkpoints_are_written_atomically_and_checked_on_load(tmp_path):
    path = save_checkpoint({"format": "something else"}, tmp_path / "a.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]  # no temporary left
    with pytest.raises(ValueError, match="not a plastorch.diehl-cook/1 checkpoint"):
        load_checkpoint(path)
    (tmp_path / "b.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "b.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_small_end_to_end_run_is_clearly_above_chance():
    train, test = load_digits("train", n_train=300), load_digits("test", n_train=300)
    test = LabeledImages(test.images[:400], test.labels[:400])
    model = DiehlCook2015(
        64, 40, time_steps=100, weight_sum=15.0, max_rate=127.5, theta_plus=0.5, seed=0
    )
    metrics = DiehlCookTrainer(model, train, test, epochs=1, batch_size=10).run()
    accuracy = metrics["epochs"][0]["accuracy_all_activity"]
    assert accuracy > 0.5, accuracy  # chance is 10%
    responses = collect_responses(
        model, test.images[:50], generator=torch.Generator().manual_seed(0)
    )
    assert (responses.sum(1) >= model.min_spikes).float().mean() > 0.9
    assert math.isfinite(metrics["epochs"][0]["train_samples_per_second"])
