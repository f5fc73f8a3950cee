namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// A copy of a model directory with some tensors replaced: every file copied (but those skipped), each safetensors file
/// rewritten tensor by tensor in its original order, dtype and metadata, a tensor taken from <c>replace</c> when it
/// gives one and copied otherwise. Written to a staging directory and renamed, so the output appears whole or not at
/// all. LoRA recovery and fine-tuning (weights from the training model) and delta compression (base + compressed delta)
/// write their outputs through it.
/// </summary>
public static class CheckpointRewrite
{
    /// <param name="replace">the tensor to write instead of the source's, or null to copy it (<see cref="Copy"/>)</param>
    /// <param name="purpose">what rewrites, for the error on a dtype that cannot be copied ("LoRA recovery")</param>
    /// <param name="skip">source file names not to copy (reports of what produced the source)</param>
    /// <param name="extra">(name, text) files to add, asked for after every tensor is written (they may report on them)</param>
    public static void Write(string source, string outDir, Func<SafeTensorsFile, TensorInfo, WriterTensor?> replace, string purpose,
        IReadOnlyCollection<string>? skip = null, Func<IEnumerable<(string Name, string Text)>>? extra = null)
    {
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        string staging = SvdLlm.Models.Data.Leftovers.TempPath(outDir);
        Directory.CreateDirectory(staging);
        try
        {
            foreach (string file in Directory.GetFiles(source))
            {
                string name = Path.GetFileName(file), target = Path.Combine(staging, name);
                if (skip?.Contains(name) == true) continue;
                if (!file.EndsWith(".safetensors", StringComparison.Ordinal)) { File.Copy(file, target); continue; }
                using var st = SafeTensorsFile.Open(file);
                var tensors = st.Tensors.Values.OrderBy(i => i.Begin).Select(info => replace(st, info) ?? Copy(st, info, purpose)).ToList();
                SafeTensorsWriter.Write(target, tensors, st.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value));
            }
            if (extra is not null)
                foreach (var (name, text) in extra()) File.WriteAllText(Path.Combine(staging, name), text);
            Directory.Move(staging, outDir);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>
    /// An untouched tensor, bit for bit: float dtypes through float32 (float16/bfloat16 → float32 → the same dtype is
    /// exact), int32 as it is (a pruned model's rope_pairs); any other dtype is refused naming the file and tensor.
    /// </summary>
    public static WriterTensor Copy(SafeTensorsFile st, TensorInfo info, string purpose) => info.DType switch
    {
        SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64 => WriterTensor.Lazy(info.Name, info.DType, info.Shape, () =>
        {
            var data = new float[checked((int)info.ElementCount)];
            st.ReadAsFloat32(info.Name, data);
            return data;
        }),
        SafeTensorsDType.I32 => WriterTensor.Int32(info.Name, info.Shape, () => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(st.GetRawBytes(info.Name)).ToArray()),
        _ => throw new CheckpointFormatException(st.Path, $"tensor {info.Name} has dtype {info.DType}; {purpose} rewrites float checkpoints", info.Name, "dtype"),
    };
}
