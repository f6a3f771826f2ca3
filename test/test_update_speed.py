"""The update's speed work computes what the plain code computes (issue 11).

Each test puts a faster piece beside the straightforward computation it replaced and fails if
the two diverge: the sigmoid-form tanh of the critics and the policy, the closed-form Gaussian
log-density and KL, the critics valued on final_obs only
where an episode was truncated, the split-half noise diagnostic with one CG solve, the
policy_ready callback, and the trainer sampling the next rollout while the critics fit.
"""

from conftest import circle_rollout
import numpy as np
import pytest
import torch
from torch import nn

from cpo_ros.algo.algorithm import ConstrainedTrustRegion
from cpo_ros.algo.buffer import gae, next_values
from cpo_ros.algo.networks import (
    Critic,
    gaussian_kl,
    gaussian_log_prob,
    GaussianPolicy,
    mlp,
    NumpyActor,
    SigmoidTanh,
)
from cpo_ros.algo.trust_region import fisher_operator, flat_grad, SolvedOperator
from cpo_ros.training.config import AlgoConfig, TrainConfig
from cpo_ros.training.run import TrainingRun
from cpo_ros.training.trainer import iteration_seed, max_episode_steps, sample, train
from cpo_ros.training.worker import RolloutWorker


def _rollout(algo, **kwargs):
    return circle_rollout(algo, **{'steps': 100, **kwargs})


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 3e-7), (torch.float64, 1e-15)])
def test_sigmoid_tanh_is_tanh_in_value_and_gradient(dtype, atol):
    x = torch.cat([torch.linspace(-12.0, 12.0, 20001, dtype=dtype),
                   torch.logspace(-30, 0, 301, dtype=dtype)]).requires_grad_(True)
    fast = SigmoidTanh()(x)
    ref = torch.tanh(x)
    torch.testing.assert_close(fast, ref, rtol=0.0, atol=atol)
    weights = torch.randn_like(x)
    (g_fast,) = torch.autograd.grad((fast * weights).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=0.0, atol=4 * atol * weights.abs().max())


def test_critic_matches_a_torch_tanh_network_with_its_weights():
    torch.manual_seed(0)
    critic = Critic(6, (64, 64))
    plain = mlp((6, 64, 64, 1))
    plain.load_state_dict(critic.net.state_dict())
    assert isinstance(critic.net[1], SigmoidTanh) and isinstance(plain[1], nn.Tanh)
    x = torch.randn(4096, 6) * 3.0
    out, ref = critic.standardised(x), plain(x).squeeze(-1)
    torch.testing.assert_close(out, ref, rtol=0.0, atol=1e-6)
    grads = torch.autograd.grad(out.pow(2).mean(), list(critic.net.parameters()))
    grads_ref = torch.autograd.grad(ref.pow(2).mean(), list(plain.parameters()))
    for g, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_policy_matches_a_torch_tanh_network_and_the_numpy_actor():
    torch.manual_seed(0)
    policy = GaussianPolicy(6, 2, (64, 32))
    with torch.no_grad():
        for p in policy.mean_net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    plain = mlp((6, 64, 32, 2))
    plain.load_state_dict(policy.mean_net.state_dict())
    obs = torch.randn(4096, 6) * 3.0
    mean = policy.mean(obs)
    torch.testing.assert_close(mean, plain(policy.norm(obs)), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(NumpyActor(policy).mean_action(obs.numpy()),
                               mean.detach().numpy(), rtol=2e-6, atol=2e-6)


def test_closed_form_log_prob_and_kl_are_torch_distributions():
    torch.manual_seed(0)
    mean_p, mean_q, u = torch.randn(3, 1000, 2, dtype=torch.float64)
    log_std_p = torch.tensor([-0.5, 0.3], dtype=torch.float64)
    log_std_q = torch.tensor([0.2, -1.0], dtype=torch.float64)
    p = torch.distributions.Normal(mean_p, log_std_p.exp().expand_as(mean_p))
    q = torch.distributions.Normal(mean_q, log_std_q.exp().expand_as(mean_q))
    torch.testing.assert_close(gaussian_log_prob(u, mean_p, log_std_p), p.log_prob(u).sum(-1))
    torch.testing.assert_close(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q),
                               torch.distributions.kl_divergence(p, q).sum(-1))


def test_advantages_value_final_obs_only_where_truncated():
    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(), max_episode_steps=20)
    rollout = _rollout(algo)
    assert rollout['truncated'].any() and not rollout['truncated'].all()
    cfg, (t, n) = algo.config, rollout['reward'].shape
    costs = rollout['cost'][..., None].astype(np.float64)
    obs, adv_r, adv_c, tgt_r, tgt_c = algo._advantages(rollout, costs)
    # The plain computation: every row of final_obs valued.
    dones = rollout['terminated'] | rollout['truncated']
    expected = []
    for critic, signal, gamma, lam in ((algo.reward_critic, rollout['reward'], cfg.gamma,
                                        cfg.lam),
                                       (algo.cost_critics[0], rollout['cost'], cfg.cost_gamma,
                                        cfg.cost_lam)):
        with torch.no_grad():
            values, final, last = (
                critic(algo.policy.norm(torch.as_tensor(x.reshape(-1, 6)))).double().numpy()
                for x in (rollout['obs'], rollout['final_obs'], rollout['last_obs']))
        values, final = values.reshape(t, n), final.reshape(t, n)
        nxt = next_values(values, last, final, rollout['terminated'], rollout['truncated'])
        expected.append(gae(signal.astype(np.float64), values, nxt, dones, gamma, lam))
    np.testing.assert_allclose(adv_r.numpy(), expected[0][0].reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tgt_r.numpy(), expected[0][1].reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv_c[:, 0].numpy(), expected[1][0].reshape(-1), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(tgt_c[:, 0].numpy(), expected[1][1].reshape(-1), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize('num_envs', [8, 7, 1])
def test_noise_diagnostic_is_the_two_halves_formula(num_envs):
    """One half's gradient and one solve give what two half gradients and two solves gave."""
    torch.manual_seed(1)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(hidden_sizes=(4,), cg_iters=200))
    policy = algo.policy
    t = 60
    obs = torch.randn(t * num_envs, 6)
    u = torch.randn(t * num_envs, 2)
    adv_c = torch.randn(t * num_envs)
    with torch.no_grad():
        old_logp = policy.log_prob(obs, u) + 0.1 * torch.randn(t * num_envs)
    ep_len = 20.0
    size = sum(p.numel() for p in policy.parameters())
    root = np.random.default_rng(0).normal(size=(size, size))
    h = root @ root.T / size + np.eye(size)

    def half_gradient(mask):
        ratio = torch.exp(policy.log_prob(obs[mask], u[mask]) - old_logp[mask])
        return flat_grad((ratio * adv_c[mask]).mean(), policy).double().numpy() * ep_len

    everything = torch.ones(t * num_envs, dtype=torch.bool)
    b = half_gradient(everything)
    operator = SolvedOperator(lambda v: h @ v, 200)
    share, cos = algo.cost_gradient_noise(obs, u, old_logp, adv_c, (t, num_envs), operator, b,
                                          ep_len).result()
    index = torch.arange(t * num_envs)
    first = (index % num_envs) < num_envs // 2 if num_envs >= 2 else index < (t * num_envs) // 2
    b_1, b_2 = half_gradient(first), half_gradient(~first)
    w_1, w_2 = np.linalg.solve(h, b_1), np.linalg.solve(h, b_2)
    s_total = (b_1 + b_2) @ (w_1 + w_2) / 4.0
    s_noise = (b_1 - b_2) @ (w_1 - w_2) / 4.0
    assert share == pytest.approx(s_noise / s_total, rel=1e-4)
    assert cos == pytest.approx(b_1 @ b_2 / (np.linalg.norm(b_1) * np.linalg.norm(b_2)),
                                rel=1e-4)
    assert operator.solves == 2  # b (or the halves' mean) and d, once each


def test_policy_ready_sees_the_final_policy_and_changes_nothing():
    torch.manual_seed(0)
    config = AlgoConfig(value_epochs=2)
    plain = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    hooked = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    hooked.load_state_dict(plain.state_dict())
    rollout = _rollout(plain)
    seen = []

    def ready():
        seen.append((hooked.version, {k: v.clone() for k, v in
                                      hooked.policy.state_dict().items()}))

    torch.manual_seed(5)
    a = plain.update(rollout)
    torch.manual_seed(5)
    b = hooked.update(rollout, policy_ready=ready)
    assert len(seen) == 1 and seen[0][0] == hooked.version == 1
    for key, value in hooked.policy.state_dict().items():
        assert torch.equal(seen[0][1][key], value), key
    for part in ('policy', 'reward_critic', 'cost_critics'):
        for key, value in plain.state_dict()[part].items():
            assert torch.equal(hooked.state_dict()[part][key], value), (part, key)
    hist_a, hist_b = a.pop('histograms'), b.pop('histograms')
    assert hist_a.keys() == hist_b.keys()
    for name, values in hist_a.items():
        np.testing.assert_array_equal(hist_b[name], values, err_msg=name)
    for key, value in a.items():
        if not key.startswith('time_'):
            assert b[key] == value or (value != value and b[key] != b[key]), key
    assert b['time_policy_ready_s'] >= 0.0 and 'time_policy_ready_s' not in a


def test_trainer_samples_ahead_as_a_plain_loop_would(tmp_path):
    """train() samples iteration k+1 during update k: the same rollouts and updates as in turn."""
    def config(out):
        return TrainConfig(task='circle', iterations=3, steps_per_iteration=1600, num_envs=4,
                           seed=3, out=str(out), torch_threads=1,
                           algo=AlgoConfig(value_epochs=2))

    trained = train(config(tmp_path / 'ahead'), show_progress=False)
    from cpo_ros.sim.make import make_vec_env

    cfg = config(tmp_path / 'plain')
    env = make_vec_env(task=cfg.task, num_envs=cfg.num_envs, seed=cfg.seed)
    run = TrainingRun(cfg, env.obs_dim, env.act_dim, env.single_action_space.low,
                      env.single_action_space.high, max_episode_steps(env),
                      num_costs=env.num_costs)
    worker = RolloutWorker(cfg.num_envs, env.obs_dim, env.act_dim,
                           cfg.steps_per_iteration // cfg.num_envs, num_costs=env.num_costs)
    while not run.done:
        seed = iteration_seed(cfg.seed, run.iteration)
        obs = env.reset(seed=seed)
        worker.reseed(seed)
        worker.use_policy(run.algorithm.policy, run.algorithm.version)
        rollout, _, timings = sample(env, worker, obs)
        run.record(rollout, timings)
    run.finish()
    for part in ('policy', 'reward_critic', 'cost_critics', 'critic_optim'):
        ahead, plain = trained.algorithm.state_dict()[part], run.algorithm.state_dict()[part]
        if part == 'critic_optim':
            ahead, plain = ahead['state'], plain['state']
            for key in plain:
                for name, value in plain[key].items():
                    assert torch.equal(ahead[key][name], value), (part, key, name)
            continue
        for key, value in plain.items():
            assert torch.equal(ahead[key], value), (part, key)
    rows_ahead, rows_plain = trained.progress.rows(), run.progress.rows()
    assert len(rows_ahead) == len(rows_plain) == 3
    for x, y in zip(rows_ahead, rows_plain, strict=True):
        for key in ('episode_return', 'episode_cost', 'kl', 'case', 'value_loss_reward',
                    'value_loss_cost', 'cost_grad_noise', 'policy_version'):
            assert x[key] == y[key], key


def _twins(config):
    """Return two algorithms in the same state: one fits on a thread, one in a process."""
    torch.manual_seed(0)
    thread = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    process = ConstrainedTrustRegion(6, 2, config, max_episode_steps=20)
    process.load_state_dict(thread.state_dict())
    process.fit_critics_in_process()
    return thread, process


def test_critics_fit_in_a_process_as_on_the_thread():
    """Same critics, optimiser state, losses and torch random state after two updates."""
    thread, process = _twins(AlgoConfig(value_epochs=2, value_minibatch=256))
    try:
        for seed in (1, 2):
            rollout = _rollout(thread, seed=seed)
            torch.manual_seed(seed)
            a = thread.update(rollout)
            rng_thread = torch.get_rng_state()
            torch.manual_seed(seed)
            b = process.update(rollout)
            assert torch.equal(torch.get_rng_state(), rng_thread)
            assert (a['value_loss_reward'], a['value_loss_cost']) == (
                b['value_loss_reward'], b['value_loss_cost'])
            # The noise diagnostic's solve ran in the process too (one torch thread there).
            assert b['cost_grad_noise'] == pytest.approx(a['cost_grad_noise'], rel=1e-6)
            assert b['cost_grad_cos'] == a['cost_grad_cos']
            state_a, state_b = thread.state_dict(), process.state_dict()
            for part in ('policy', 'reward_critic', 'cost_critics'):
                for key, value in state_a[part].items():
                    assert torch.equal(state_b[part][key], value), (seed, part, key)
            for index, values in state_a['critic_optim']['state'].items():
                for name, value in values.items():
                    assert torch.equal(state_b['critic_optim']['state'][index][name], value)
    finally:
        process.close()


def test_fit_process_solves_as_the_parent_and_while_its_fit_answer_is_unread():
    """A solve sent during a fit is worked on once the fit ends, before the parent reads.

    The fitted critics are a bigger answer than a pipe holds: written from the child's main
    loop, the child would wait for the parent to read it (after sampling, in training)
    before it started the solve.
    """
    import time

    torch.manual_seed(0)
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(value_epochs=1, value_minibatch=512),
                                  max_episode_steps=20)
    algo.fit_critics_in_process()
    try:
        obs, target = torch.randn(4000, 6), torch.randn(4000)
        with torch.no_grad():
            norm_obs = algo.policy.norm(obs)
        size = sum(p.numel() for p in algo.policy.parameters())
        vectors = [np.random.default_rng(seed).normal(size=size) for seed in (1, 2)]
        fit = algo._fit_process.submit(algo, norm_obs, target, target[:, None].clone())
        solve = algo._fit_process.submit_solve(algo, norm_obs, vectors)
        # The fit's answer is waiting in the pipe once the fit is done (nothing is read yet);
        # the child then starts the solve at once, unless it waits for the parent to read.
        assert algo._fit_process._conn.reader.poll(300), 'the fit never answered'
        time.sleep(2.0)
        read_at = time.time()
        solutions = solve.result()  # reads the fit's answer first, then the solve's
        assert solve.started < read_at
        fit.result()
        local = fisher_operator(algo.policy, norm_obs, algo.config.cg_damping,
                                algo.config.cg_iters, normalised=True)
        for v, w in zip(vectors, solutions, strict=True):
            np.testing.assert_allclose(w, local.solve(v), rtol=1e-6, atol=1e-9)
    finally:
        algo.close()


def test_a_killed_fit_process_loses_nothing():
    """kill -9 of the critics' process between updates and during a fit: the same updates.

    Killed during a fit, the parent fits from the same inputs and random state and solves the
    noise diagnostic itself; killed between updates, the next update starts a new process.
    """
    import signal
    import warnings

    thread, process = _twins(AlgoConfig(value_epochs=40, value_minibatch=64))

    def kill() -> None:
        process._fit_process._process.send_signal(signal.SIGKILL)
        process._fit_process._process.wait()

    try:
        for seed in (1, 2, 3):
            rollout = _rollout(thread, seed=seed)
            if seed == 2:
                kill()  # between updates
            torch.manual_seed(seed)
            a = thread.update(rollout)
            torch.manual_seed(seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                # seed 3: during the fit (40 epochs of 64-sample minibatches take a while)
                b = process.update(rollout, policy_ready=kill if seed == 3 else None)
            if seed > 1:
                assert any('fit process' in str(w.message) for w in caught), seed
            assert (a['value_loss_reward'], a['value_loss_cost']) == (
                b['value_loss_reward'], b['value_loss_cost'])
            assert b['cost_grad_noise'] == pytest.approx(a['cost_grad_noise'], rel=1e-6)
            for part in ('policy', 'reward_critic', 'cost_critics'):
                for key, value in thread.state_dict()[part].items():
                    assert torch.equal(process.state_dict()[part][key], value), (seed, key)
        assert not process._fit_process.alive  # killed during the last update
        rollout = _rollout(thread, seed=4)
        with pytest.warns(RuntimeWarning, match='starting a new one'):
            process.update(rollout)
        assert process._fit_process.alive
    finally:
        process.close()


def test_critic_fit_process_reports_a_failure_and_carries_on():
    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(value_epochs=1), max_episode_steps=20)
    algo.fit_critics_in_process()
    fit_process = algo._fit_process
    try:
        wrong = fit_process.submit(algo, torch.zeros(10, 5), torch.zeros(10), torch.zeros(10, 1))
        with pytest.raises(RuntimeError, match='critic fit failed in its process'):
            wrong.result()
        result = algo.update(_rollout(algo))
        assert np.isfinite(result['value_loss_reward'])
    finally:
        algo.close()
    assert algo._fit_process is None and fit_process._process.poll() is not None


def test_ctrl_c_while_waiting_for_the_fit_process_never_hangs():
    """Ctrl-C inside the wait for the child's answer: the next wait and close() return.

    Interrupted part-way through reading the answer, the pipe is out of step: reading on (the
    rollback waits for the fit) would wait for ever, which is what `cpo-ros train` did on
    some Ctrl-C's.
    """
    import signal
    import threading

    algo = ConstrainedTrustRegion(6, 2, AlgoConfig(value_epochs=200, value_minibatch=64),
                                  max_episode_steps=20)
    algo.fit_critics_in_process()
    fit_process = algo._fit_process
    obs, target = torch.randn(20_000, 6), torch.randn(20_000)
    pending = fit_process.submit(algo, obs, target, target[:, None].clone())

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            pending.wait()  # the fit takes seconds: interrupted while blocked in the read
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
    finished = threading.Event()

    def wait_and_close():
        pending.wait()
        with pytest.raises(RuntimeError, match='interrupted'):
            pending.result()
        fit_process.close()
        finished.set()

    threading.Thread(target=wait_and_close, daemon=True).start()
    assert finished.wait(30.0), 'the wait or close() after Ctrl-C blocked'
    assert fit_process._process.poll() is not None
