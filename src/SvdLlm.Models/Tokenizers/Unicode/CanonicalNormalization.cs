using System.Globalization;
using System.Text;

namespace SvdLlm.Models.Tokenizers.Unicode;

/// <summary>
/// Unicode canonical normalization (NFC and NFD, UAX #15) on our own tables.
/// </summary>
/// <remarks>
/// The solution runs with <c>InvariantGlobalization=true</c>, where <see cref="string.Normalize()"/>
/// returns non-ASCII text unchanged. Hugging Face <c>tokenizers</c> normalizes with the Rust
/// <c>unicode-normalization</c> crate, so we carry the Unicode Character Database tables ourselves
/// (<see cref="UnicodeNormalizationData"/>, Unicode 15.0) and implement the algorithm:
/// full canonical decomposition, canonical ordering of combining marks, then canonical composition.
/// Compatibility forms (NFKC/NFKD) are not implemented.
/// </remarks>
internal static class CanonicalNormalization
{
    // Hangul syllables compose and decompose algorithmically (Unicode §3.12).
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Tables Data = new();

    /// <summary>Returns <paramref name="s"/> in Normalization Form C; the same instance when already NFC.</summary>
    public static string ToNfc(string s)
    {
        if (IsNfcQuick(s)) return s;
        List<int> cps = DecomposeAndOrder(s);
        Compose(cps);
        return FromCodePoints(cps);
    }

    /// <summary>Returns <paramref name="s"/> in Normalization Form D.</summary>
    public static string ToNfd(string s)
    {
        bool simple = true;
        foreach (char c in s)
        {
            // Below U+00C0 no character decomposes or has a non-zero combining class.
            if (c >= 0xC0) { simple = false; break; }
        }
        return simple ? s : FromCodePoints(DecomposeAndOrder(s));
    }

    /// <summary>Canonical combining class of a code point (0 for starters).</summary>
    public static int CombiningClass(int cp) => Data.CombiningClass(cp);

    /// <summary>
    /// NFC quick check (UAX #15 §9): true when every code point has NFC_QC=Yes and the combining
    /// classes never decrease. "Maybe" is treated as "No", which only costs time.
    /// </summary>
    private static bool IsNfcQuick(string s)
    {
        int lastClass = 0;
        for (int i = 0; i < s.Length; i++)
        {
            int cp = s[i];
            // U+0300 is the first character that is not NFC_QC=Yes with class 0.
            if (cp < 0x300) { lastClass = 0; continue; }
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cp = char.ConvertToUtf32(s[i], s[i + 1]);
                i++;
            }
            int cc = Data.CombiningClass(cp);
            if (cc != 0 && lastClass > cc) return false;
            if (!Data.IsNfcQuickCheckYes(cp)) return false;
            lastClass = cc;
        }
        return true;
    }

    private static List<int> DecomposeAndOrder(string s)
    {
        var cps = new List<int>(s.Length + 8);
        foreach (Rune r in s.EnumerateRunes()) AppendDecomposition(r.Value, cps);
        // Canonical ordering: a stable sort of every run of non-starters by combining class.
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = Data.CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0)
            {
                int prev = Data.CombiningClass(cps[j - 1]);
                if (prev <= cc) break;
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
        return cps;
    }

    private static void AppendDecomposition(int cp, List<int> output)
    {
        int sIndex = cp - SBase;
        if (sIndex is >= 0 and < SCount)
        {
            output.Add(LBase + sIndex / NCount);
            output.Add(VBase + sIndex % NCount / TCount);
            int t = sIndex % TCount;
            if (t != 0) output.Add(TBase + t);
            return;
        }
        if (Data.Decompositions.TryGetValue(cp, out int[]? mapping))
        {
            // Mappings are one level deep in the UCD; recurse for the full decomposition.
            foreach (int d in mapping) AppendDecomposition(d, output);
        }
        else
        {
            output.Add(cp);
        }
    }

    /// <summary>Canonical composition in place (UAX #15 §3.11, "D117").</summary>
    private static void Compose(List<int> cps)
    {
        int starter = -1;   // index in the output of the last starter
        int lastClass = 0;  // class of the last code point appended after that starter
        int count = 0;      // output length (the output overwrites cps from the front)
        for (int i = 0; i < cps.Count; i++)
        {
            int c = cps[i];
            int cc = Data.CombiningClass(c);
            if (starter >= 0)
            {
                // c is blocked from the starter when something between them has class 0 or >= cc.
                bool adjacent = count - 1 == starter;
                if (adjacent || (lastClass != 0 && lastClass < cc))
                {
                    int composite = ComposePair(cps[starter], c);
                    if (composite >= 0)
                    {
                        cps[starter] = composite;
                        continue;
                    }
                }
            }
            if (cc == 0) starter = count;
            lastClass = cc;
            cps[count++] = c;
        }
        cps.RemoveRange(count, cps.Count - count);
    }

    private static int ComposePair(int a, int b)
    {
        int lIndex = a - LBase;
        if (lIndex is >= 0 and < LCount)
        {
            int vIndex = b - VBase;
            return vIndex is >= 0 and < VCount ? SBase + (lIndex * VCount + vIndex) * TCount : -1;
        }
        int sIndex = a - SBase;
        if (sIndex is >= 0 and < SCount && sIndex % TCount == 0)
        {
            int tIndex = b - TBase;
            return tIndex is > 0 and < TCount ? a + tIndex : -1;
        }
        return Data.Compositions.TryGetValue(((long)a << 21) | (uint)b, out int composite) ? composite : -1;
    }

    private static string FromCodePoints(List<int> cps)
    {
        var sb = new StringBuilder(cps.Count + 4);
        foreach (int cp in cps) sb.Append(new Rune(cp));
        return sb.ToString();
    }

    /// <summary>The parsed tables, built once on first use.</summary>
    private sealed class Tables
    {
        private readonly byte[] _bmpClass = new byte[0x10000];
        private readonly Dictionary<int, byte> _supplementaryClass = new();
        private readonly bool[] _bmpNotYes = new bool[0x10000];
        private readonly HashSet<int> _supplementaryNotYes = new();

        public Dictionary<int, int[]> Decompositions { get; } = new();

        /// <summary>(first &lt;&lt; 21 | second) → primary composite.</summary>
        public Dictionary<long, int> Compositions { get; } = new();

        public Tables()
        {
            foreach (string entry in UnicodeNormalizationData.CombiningClasses.Split(','))
            {
                int colon = entry.IndexOf(':');
                var (start, end) = ParseRange(entry[..colon]);
                byte cc = byte.Parse(entry[(colon + 1)..], CultureInfo.InvariantCulture);
                for (int cp = start; cp <= end; cp++)
                {
                    if (cp < 0x10000) _bmpClass[cp] = cc;
                    else _supplementaryClass[cp] = cc;
                }
            }
            var excluded = new HashSet<int>();
            foreach (string range in UnicodeNormalizationData.FullCompositionExclusions.Split(','))
            {
                var (start, end) = ParseRange(range);
                for (int cp = start; cp <= end; cp++) excluded.Add(cp);
            }
            foreach (string entry in UnicodeNormalizationData.CanonicalDecompositions.Split(','))
            {
                int colon = entry.IndexOf(':');
                int cp = ParseHex(entry[..colon]);
                int[] mapping = entry[(colon + 1)..].Split(' ').Select(ParseHex).ToArray();
                Decompositions[cp] = mapping;
                // Primary composites: pair decompositions not excluded from composition.
                if (mapping.Length == 2 && !excluded.Contains(cp))
                    Compositions[((long)mapping[0] << 21) | (uint)mapping[1]] = cp;
            }
            foreach (string list in new[] { UnicodeNormalizationData.NfcQuickCheckNo, UnicodeNormalizationData.NfcQuickCheckMaybe })
            {
                foreach (string range in list.Split(','))
                {
                    var (start, end) = ParseRange(range);
                    for (int cp = start; cp <= end; cp++)
                    {
                        if (cp < 0x10000) _bmpNotYes[cp] = true;
                        else _supplementaryNotYes.Add(cp);
                    }
                }
            }
        }

        public int CombiningClass(int cp) =>
            cp < 0x10000 ? _bmpClass[cp] : _supplementaryClass.TryGetValue(cp, out byte cc) ? cc : 0;

        public bool IsNfcQuickCheckYes(int cp) =>
            cp < 0x10000 ? !_bmpNotYes[cp] : !_supplementaryNotYes.Contains(cp);

        private static (int Start, int End) ParseRange(string range)
        {
            int dash = range.IndexOf('-');
            return dash < 0 ? (ParseHex(range), ParseHex(range)) : (ParseHex(range[..dash]), ParseHex(range[(dash + 1)..]));
        }

        private static int ParseHex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }
}
