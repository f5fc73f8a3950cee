using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Tests.Checkpoints;

public class LazyWriterTests
{
    [Fact]
    public void Lazy_tensors_are_produced_in_order_one_at_a_time_and_checked()
    {
        using var dir = new TempDirectory();
        string path = dir.File("lazy.safetensors");
        var produced = new List<string>();
        WriterTensor Lazy(string name, float value) => WriterTensor.Lazy(name, SafeTensorsDType.BF16, [2, 2], () =>
        {
            produced.Add(name);
            return new[] { value, value, value, value };
        });
        SafeTensorsWriter.Write(path, [Lazy("a", 1f), Lazy("b", 2f)]);
        Assert.Equal(new[] { "a", "b" }, produced);
        using var file = SafeTensorsFile.Open(path);
        var b = new float[4];
        file.ReadAsFloat32("b", b);
        Assert.All(b, v => Assert.Equal(2f, v));

        var bad = WriterTensor.Lazy("c", SafeTensorsDType.F32, [3], () => new float[2]);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [bad]));
        using var again = SafeTensorsFile.Open(path); // the failed write left the previous file intact
        Assert.True(again.Contains("a"));
    }
}
