using SvdLlm.Models.Training;

namespace SvdLlm.Models.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void AdamW_steps_follow_the_formula_with_bias_correction_and_decoupled_decay()
    {
        var arena = new ParameterArena();
        arena.Add("w", 2, 2);   // decayed
        arena.Add("norm", 2);   // not decayed
        arena.Allocate();
        float[] init = [0.5f, -1f, 2f, 0.25f, 1f, 1f];
        init.CopyTo(arena.Data.Span);
        using var grads = arena.NewBlock();
        using var opt = new AdamW(arena) { Beta1 = 0.9f, Beta2 = 0.99f, Epsilon = 1e-8f, WeightDecay = 0.1f };
        float[][] gs = [[0.1f, -0.2f, 0.3f, 0f, 1f, -1f], [0.05f, 0.1f, -0.3f, 0.2f, 0.5f, 0.5f]];
        double[] p = init.Select(x => (double)x).ToArray(), m = new double[6], v = new double[6];
        float lr = 0.01f;
        for (int step = 1; step <= 2; step++)
        {
            gs[step - 1].CopyTo(grads.Span);
            opt.Update(grads, lr);
            for (int i = 0; i < 6; i++)
            {
                double g = gs[step - 1][i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.99 * v[i] + 0.01 * g * g;
                double mh = m[i] / (1 - Math.Pow(0.9, step)), vh = v[i] / (1 - Math.Pow(0.99, step));
                double decay = i < 4 ? 0.1 : 0;
                p[i] -= lr * (mh / (Math.Sqrt(vh) + 1e-8) + decay * p[i]);
            }
            for (int i = 0; i < 6; i++) Assert.Equal(p[i], arena.Data.Span[i], 1e-6);
        }
        Assert.Equal(2, opt.Step);
        arena.Dispose();
    }

    [Fact]
    public void Schedule_warms_up_linearly_then_decays_by_cosine()
    {
        Assert.Equal(0.1f, TrainingMath.LearningRate(0, 100, 10, 1f, 0f), 6);
        Assert.Equal(1f, TrainingMath.LearningRate(9, 100, 10, 1f, 0f), 6);
        Assert.Equal(1f, TrainingMath.LearningRate(10, 100, 10, 1f, 0.1f), 6);
        Assert.Equal(0.55f, TrainingMath.LearningRate(55, 100, 10, 1f, 0.1f), 5); // halfway through the cosine
        Assert.Equal(0.1f, TrainingMath.LearningRate(100, 100, 10, 1f, 0.1f), 6);
    }

    [Fact]
    public void Clipping_scales_to_the_max_norm_and_rejects_nan()
    {
        float[] g = [3f, 4f];
        Assert.Equal(5.0, TrainingMath.ClipGlobalNorm(g, 1.0), 9);
        Assert.Equal(0.6f, g[0], 6);
        Assert.Equal(0.8f, g[1], 6);
        float[] small = [0.3f, 0.4f];
        TrainingMath.ClipGlobalNorm(small, 1.0);
        Assert.Equal(0.3f, small[0]);
        Assert.Throws<ArithmeticException>(() => TrainingMath.ClipGlobalNorm(new[] { 1f, float.NaN }, 1.0));
    }
}
