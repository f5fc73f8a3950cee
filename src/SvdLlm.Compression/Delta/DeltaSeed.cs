using System.Text;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Delta;

/// <summary>
/// The seed of one matrix's masks, from the run's seed and the matrix's name, so every matrix draws its own stream and a
/// matrix's masks do not change when other matrices are added, removed or processed in another order.
/// <see cref="string.GetHashCode()"/> is randomized per process, so the name is hashed with FNV-1a (64-bit, over its
/// UTF-8 bytes): fixed, documented, and the same on every machine.
/// </summary>
public static class DeltaSeed
{
    /// <summary>
    /// SplitMix64's first output for the state (first output of SplitMix64(seed)) XOR FNV-1a(name): the seed is
    /// scrambled before the name's hash enters, so seeds 0 and 1 do not give related streams for related names.
    /// </summary>
    public static ulong ForMatrix(ulong seed, string matrixName)
    {
        ArgumentNullException.ThrowIfNull(matrixName);
        ulong scrambled = new SplitMix64(seed).Next();
        return new SplitMix64(scrambled ^ Fnv1a64(Encoding.UTF8.GetBytes(matrixName))).Next();
    }

    /// <summary>FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).</summary>
    internal static ulong Fnv1a64(ReadOnlySpan<byte> bytes)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (byte b in bytes)
        {
            h ^= b;
            h *= 0x100000001b3UL;
        }
        return h;
    }
}
