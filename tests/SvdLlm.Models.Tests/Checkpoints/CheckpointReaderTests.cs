using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Tests.Checkpoints;

public sealed class CheckpointReaderTests : IDisposable
{
    private const string Q = "model.layers.0.self_attn.q_proj.weight";
    private const string K = "model.layers.0.self_attn.k_proj.weight";
    private const string Embed = "model.embed_tokens.weight";
    private const string Shard1 = "model-00001-of-00002.safetensors";
    private const string Shard2 = "model-00002-of-00002.safetensors";

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static float[] Ramp(int count, float start) => Enumerable.Range(0, count).Select(i => start + i).ToArray();

    private void WriteShard(string fileName, params WriterTensor[] tensors) =>
        SafeTensorsWriter.Write(_temp.File(fileName), tensors);

    private void WriteIndex(params (string Tensor, string Shard)[] map)
    {
        string entries = string.Join(",", map.Select(e => $"\"{e.Tensor}\":\"{e.Shard}\""));
        File.WriteAllText(_temp.File(CheckpointReader.IndexFileName),
            "{\"metadata\":{\"total_size\":123},\"weight_map\":{" + entries + "}}");
    }

    private void WriteTwoShards()
    {
        WriteShard(Shard1,
            new WriterTensor(Embed, SafeTensorsDType.BF16, [4, 2], Ramp(8, 0)),
            new WriterTensor(Q, SafeTensorsDType.F32, [2, 2], Ramp(4, 10)));
        WriteShard(Shard2, new WriterTensor(K, SafeTensorsDType.F16, [2, 2], Ramp(4, 20)));
    }

    [Fact]
    public void ReadsAcrossTwoShards()
    {
        WriteTwoShards();
        WriteIndex((Embed, Shard1), (Q, Shard1), (K, Shard2));

        using CheckpointReader reader = CheckpointReader.Open(_temp.Path);
        Assert.Equal([Embed, Q, K], reader.TensorNames);
        Assert.Equal(2, reader.FilePaths.Count);
        Assert.Equal(Ramp(8, 0), reader.ReadAsFloat32(Embed));
        Assert.Equal(Ramp(4, 10), reader.ReadAsFloat32(Q));
        var k = new float[4];
        reader.ReadAsFloat32(K, k);
        Assert.Equal(Ramp(4, 20), k);
        Assert.Equal(SafeTensorsDType.F16, reader.GetInfo(K).DType);
        Assert.True(reader.Contains(Q));
        Assert.False(reader.Contains("lm_head.weight"));
        reader.RequireShape(Q, 2, 2);
    }

    [Fact]
    public void ReadsASingleFile()
    {
        WriteShard(CheckpointReader.SingleFileName, new WriterTensor(Q, SafeTensorsDType.F32, [2], new float[] { 1, 2 }));

        using CheckpointReader reader = CheckpointReader.Open(_temp.Path);
        Assert.Equal([Q], reader.TensorNames);
        Assert.Equal([1f, 2f], reader.ReadAsFloat32(Q));
    }

    [Fact]
    public void MissingShardNamesShardAndIndex()
    {
        WriteShard(Shard1, new WriterTensor(Q, SafeTensorsDType.F32, [1], new float[] { 1 }));
        WriteIndex((Q, Shard1), (K, Shard2));

        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains(Shard2, e.Message);
        Assert.Contains(CheckpointReader.IndexFileName, e.Message);
    }

    [Fact]
    public void TensorListedInIndexButNotInShard()
    {
        WriteTwoShards();
        WriteIndex((Embed, Shard1), (Q, Shard2), (K, Shard2));

        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains($"'{Q}'", e.Message);
        Assert.Contains(Shard2, e.Message);
        Assert.Contains(CheckpointReader.IndexFileName, e.Message);
    }

    [Fact]
    public void TensorStoredInTwoShards()
    {
        WriteShard(Shard1, new WriterTensor(Q, SafeTensorsDType.F32, [1], new float[] { 1 }));
        WriteShard(Shard2,
            new WriterTensor(Q, SafeTensorsDType.F32, [1], new float[] { 2 }),
            new WriterTensor(K, SafeTensorsDType.F32, [1], new float[] { 3 }));
        WriteIndex((Q, Shard1), (K, Shard2));

        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains($"'{Q}'", e.Message);
        Assert.Contains("two shards", e.Message);
    }

    [Fact]
    public void InvalidIndexJson()
    {
        File.WriteAllText(_temp.File(CheckpointReader.IndexFileName), "{\"weight_map\": ");
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains(CheckpointReader.IndexFileName, e.Message);
    }

    [Fact]
    public void ShardNameMayNotLeaveTheDirectory()
    {
        WriteIndex((Q, "../elsewhere.safetensors"));
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains("plain file name", e.Message);
    }

    [Fact]
    public void PickleOnlyDirectoryIsRefusedWithExplanation()
    {
        File.WriteAllBytes(_temp.File("pytorch_model.bin"), [0x80, 0x02]);
        File.WriteAllText(_temp.File("config.json"), "{}");

        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains("pytorch_model.bin", e.Message);
        Assert.Contains("unpickling can execute arbitrary code", e.Message);
        Assert.Contains("safe_serialization=True", e.Message);
        Assert.Contains(_temp.Path, e.Message);
    }

    [Fact]
    public void EmptyDirectory()
    {
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_temp.Path));
        Assert.Contains($"no model.safetensors or model.safetensors.index.json in {_temp.Path}", e.Message);
    }

    [Fact]
    public void MissingDirectory() =>
        Assert.Throws<DirectoryNotFoundException>(() => CheckpointReader.Open(_temp.File("nope")));

    [Fact]
    public void RequireShapeExplainsTheMismatch()
    {
        WriteShard(CheckpointReader.SingleFileName, new WriterTensor(Q, SafeTensorsDType.F32, [64, 32], new float[64 * 32]));

        using CheckpointReader reader = CheckpointReader.Open(_temp.Path);
        var e = Assert.Throws<CheckpointFormatException>(() => reader.RequireShape(Q, 64, 64));
        string file = _temp.File(CheckpointReader.SingleFileName);
        Assert.Equal($"tensor '{Q}' in {file} has shape [64, 32]; the architecture (config.json) expects [64, 64]", e.Message);
        Assert.Equal(Q, e.TensorName);
    }

    [Fact]
    public void UnknownTensorSuggestsClosestName()
    {
        WriteShard(CheckpointReader.SingleFileName,
            new WriterTensor(Q, SafeTensorsDType.F32, [1], new float[1]),
            new WriterTensor(Embed, SafeTensorsDType.F32, [1], new float[1]));

        using CheckpointReader reader = CheckpointReader.Open(_temp.Path);
        var e = Assert.Throws<CheckpointFormatException>(() => reader.GetInfo("model.layers.0.self_attn.q_prj.weight"));
        Assert.Contains(_temp.Path, e.Message);
        Assert.Contains("'model.layers.0.self_attn.q_prj.weight'", e.Message);
        Assert.Contains($"Did you mean '{Q}'?", e.Message);

        var far = Assert.Throws<CheckpointFormatException>(() => reader.ReadAsFloat32("lm_head.weight"));
        Assert.DoesNotContain("Did you mean", far.Message);
    }
}
