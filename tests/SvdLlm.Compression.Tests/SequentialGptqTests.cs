using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// GPTQ's sequential calibration checked against an ordinary one-pass calibration of the finished, fully quantized
/// model: in that model every linear's input already comes from quantized layers and from the quantized linears
/// before it in its own layer, which is exactly the H sequential GPTQ must have used for it.
/// </summary>
public class SequentialGptqTests
{
    private const int SeqLen = 16, Samples = 8;

    [Fact]
    public void EachHessianComesFromTheQuantizedLinearsBeforeIt()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 9);
        var windows = RandomWindows.Sample(99, Samples, SeqLen, 4);
        var options = new GptqOptions { Bits = 3, GroupSize = 8 };

        var results = new Dictionary<string, (QuantizedPart Part, Tensor<float> Q)>();
        var order = new List<int>();
        using (var model = ModelLoader.Load(ckpt.Directory))
            SequentialGptq.Run(model, new CalibrationWindows(windows, SeqLen), MatrixQuantizer.Gptq(options), (layer, done) =>
            {
                order.Add(layer);
                foreach (var q in done) results[q.Linear.Name] = (q.Parts.Single(), q.Linear.Weight.Clone());
            });
        using var original = ModelLoader.Load(ckpt.Directory);
        Assert.Equal(Enumerable.Range(0, original.NumLayers), order);
        Assert.Equal(original.Linears.Select(l => l.Name).Order(), results.Keys.Order());

        using var quantized = ModelLoader.Load(ckpt.Directory);
        foreach (var l in quantized.Linears)
        {
            quantized.Load(l);
            l.SetDense(results[l.Name].Q.Clone(), l.Bias?.Clone());
        }
        using var sequential = Calibrator.Collect(quantized, windows, SeqLen);
        using var plain = Calibrator.Collect(original, windows, SeqLen);
        int differFromPlain = 0;
        foreach (var l in original.Linears)
        {
            using var w = Compressor.Weight(original, l);
            var again = Gptq.Quantize(w, sequential.Input(l.InputKey).Gram, options);
            var got = results[l.Name].Part;
            var gotCodes = ((QuantizedMatrix)got.Matrix).Codes;
            Assert.Equal(again.Matrix.Codes, gotCodes);
            Assert.Equal(again.Loss, got.Result!.Loss, Math.Max(again.Loss, 1e-30) * 1e-9);
            // The dequantized weights the model ran with are the codes' values.
            using var q = got.Matrix.Dequantize();
            for (int i = 0; i < q.Length; i++) Assert.Equal((float)q.Span[i], results[l.Name].Q.Span[i]);
            if (!Gptq.Quantize(w, plain.Input(l.InputKey).Gram, options).Matrix.Codes.SequenceEqual(gotCodes)) differFromPlain++;
        }
        // Inputs from the original model would have given other codes (so this test can tell the two apart).
        Assert.True(differFromPlain >= original.Linears.Count / 2, $"only {differFromPlain} linears differ from a non-sequential run");
        foreach (var (t, q) in results.Values) q.Dispose();
    }
}
